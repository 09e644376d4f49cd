package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/internal/pybuild"
	"github.com/slither-go/slither/python"
)

// newPython is the `slither python` group: setting up the free-threaded
// CPython from any Go module. Nothing on its path needs cgo, so it works
// in a CGO_ENABLED=0 build, before the cgo parts can compile.
func newPython() *cobra.Command {
	cfg := pybuild.FromEnv()
	cmd := &cobra.Command{
		Use:   "python",
		Short: "Install the free-threaded CPython and print the environment cgo needs to embed it",
		Long: `python sets up the free-threaded CPython that Slither embeds, from any Go module:

  ` + pybuild.InstallCommand + `
  ` + pybuild.EnvCommand + `
  go build

install builds it from Debian's source package into a cache (or checks SLITHER_PYTHON),
env prints the exports cgo needs, path prints the interpreter (or, with --package, a
directory to put on PYTHONPATH so plain Python can import slither).`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&cfg.Version, "py-version", cfg.Version, "CPython major.minor to build (default "+pybuild.DefaultVersion+"; env "+pybuild.EnvVersion+")")
	pf.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "where the build is installed (default ~/.cache/slither/cpython-<version>t; env "+pybuild.EnvPrefix+")")
	pf.StringVar(&cfg.Python, "python", cfg.Python, "an existing free-threaded interpreter to use instead of building one (env "+pybuild.EnvPython+")")

	install := &cobra.Command{
		Use:   "install",
		Short: "Build (once, about four minutes on two cores) or find the free-threaded CPython",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pybuild.Install(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}

	shell := "sh"
	env := &cobra.Command{
		Use:   "env",
		Short: "Print the exports cgo needs: PKG_CONFIG_PATH, an rpath in CGO_LDFLAGS, CGO_ENABLED=1",
		Long: `env prints, for the shell --shell names, the variables a build of a program that embeds
Python needs: PKG_CONFIG_PATH (cgo finds python3-embed with it), CGO_LDFLAGS with an rpath
to the directory of libpython (so the program loads it with nothing set at run time) and
CGO_ENABLED=1. Use it as: eval "$(slither python env)" (sh, bash, zsh),
slither python env --shell fish | source, or include its --shell make output in a Makefile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := pybuild.Locate(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out, err := pybuild.Exports(l, shell)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), out)
			return err
		},
	}
	env.Flags().StringVar(&shell, "shell", shell, "the syntax to print: "+strings.Join(pybuild.Shells, ", "))

	pkg := false
	path := &cobra.Command{
		Use:   "path",
		Short: "Print the free-threaded interpreter's path (--package: a directory for PYTHONPATH holding the slither package)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p string
			var err error
			if pkg {
				p, err = python.Dir()
			} else {
				// Locate checks that the interpreter is there and free-threaded.
				if _, err = pybuild.Locate(cmd.Context(), cfg); err == nil {
					p, err = cfg.Interpreter()
				}
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), p)
			return err
		},
	}
	path.Flags().BoolVar(&pkg, "package", false, "print a directory to put on PYTHONPATH so that plain Python can `import slither`")

	cmd.AddCommand(install, env, path)
	return cmd
}
