package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/internal/pybuild"
)

// withBundle adds `slither python bundle` to the python group: a
// relocatable runtime laid out beside a program, and the exports that link
// the program to it. It reads the group's --py-version, --prefix and
// --python flags.
func withBundle(group *cobra.Command) *cobra.Command {
	venv, shell := "", "sh"
	cmd := &cobra.Command{
		Use:   "bundle [--env] DIR",
		Short: "Lay out a relocatable Python runtime beside a program (--env: print the exports that link the program to it)",
		Long: `bundle DIR copies into DIR what a program that embeds Python needs at run time, so that the
program and DIR can be shipped together: libpython, the standard library, the interpreter
(process pools run it), the --venv's site-packages and the slither package. The program must
be linked to find libpython relative to itself: build it after

  eval "$(slither python bundle --env pyrt)"
  go build -o app .
  slither python bundle pyrt      # beside app

(--env prints PKG_CONFIG_PATH and an rpath of the literal $ORIGIN/pyrt/lib). At run time
the engine finds the bundle beside the executable (by its ` + pybuild.BundleMarker + `), and
process pools run its interpreter, with nothing set by hand.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := pybuild.Config{
				Version: cmd.Flag("py-version").Value.String(),
				Prefix:  cmd.Flag("prefix").Value.String(),
				Python:  cmd.Flag("python").Value.String(),
			}
			if env, _ := cmd.Flags().GetBool("env"); env {
				if venv != "" {
					return fmt.Errorf("python bundle: --venv is for laying out a bundle, not with --env")
				}
				out, err := pybuild.BundleExports(cmd.Context(), cfg, args[0], shell)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), out)
				return err
			}
			return pybuild.MakeBundle(cmd.Context(), cfg, args[0], venv)
		},
	}
	cmd.Flags().Bool("env", false, "print the exports that build a program loading libpython from DIR, relative to the program's directory")
	cmd.Flags().StringVar(&venv, "venv", "", "a venv made from the same free-threaded Python whose site-packages go into the bundle")
	cmd.Flags().StringVar(&shell, "shell", shell, "with --env, the syntax to print: "+strings.Join(pybuild.Shells, ", "))
	group.AddCommand(cmd)
	return group
}
