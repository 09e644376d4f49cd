package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/internal/pybuild"
)

// slitherModule is the module a new project requires.
const slitherModule = "github.com/slither-go/slither"

// zeroVersion is the version a require carries when a replace directive
// supplies the module (the form `go mod edit -replace` leaves).
const zeroVersion = "v0.0.0-00010101000000-000000000000"

// newInit is `slither init`: a new module from the quickstart template.
func newInit() *cobra.Command {
	var module, version, replace string
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Create a working module in DIR (default .): main.go, a Python module with a thread-safe function, tests in Go and Python",
		Long: `init writes the quickstart template (examples/quickstart) into DIR as a module of your own:
main.go runs mymod.score, a @slither.thread_safe function in mymod.py, through Auto (the
embedded thread pool) and a process pool; main_test.go and test_mymod.py test it in Go and in
plain Python; go.mod requires ` + slitherModule + `. It never overwrites a file: if any
of them exists in DIR, it writes nothing.

The required version is the one this binary was built from (go run ...@VERSION); --version
names another, and --replace points the module at a local checkout of Slither instead.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			bi, _ := debug.ReadBuildInfo()
			v, err := requireVersion(version, replace, bi)
			if err != nil {
				return err
			}
			files, err := initFiles(dir, module, v, replace)
			if err != nil {
				return err
			}
			if err := writeNew(dir, files); err != nil {
				return err
			}
			return printNext(cmd.OutOrStdout(), dir, files)
		},
	}
	f := cmd.Flags()
	f.StringVar(&module, "module", "", "the new module's path (default: DIR's base name)")
	f.StringVar(&version, "version", "", "the "+slitherModule+" version to require (default: this binary's)")
	f.StringVar(&replace, "replace", "", "a local checkout of "+slitherModule+" to build against (a replace directive)")
	return cmd
}

// requireVersion picks the version go.mod requires: --version, else the
// version of the slither module this binary was built from, else (with a
// replace, which makes the version moot) the zero pseudo-version.
func requireVersion(flag, replace string, bi *debug.BuildInfo) (string, error) {
	if flag != "" {
		if !moduleVersion.MatchString(flag) {
			return "", fmt.Errorf("init: --version %q is not a module version (vMAJOR.MINOR.PATCH)", flag)
		}
		return flag, nil
	}
	if bi != nil {
		for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
			// A checkout build reads "(devel)" or a pseudo-version with
			// "+dirty": neither can be fetched by the new module.
			if m != nil && m.Path == slitherModule && m.Replace == nil && moduleVersion.MatchString(m.Version) {
				return m.Version, nil
			}
		}
	}
	if replace != "" {
		return zeroVersion, nil
	}
	return "", errors.New("init: this slither was built from a checkout, so its version is unknown: pass --version vX.Y.Z, " +
		"--replace with the checkout's directory, or run it as `CGO_ENABLED=0 go run " + slitherModule + "/cmd/slither@latest init`")
}

// moduleVersion matches a semantic version a go.mod can require (no build
// metadata such as +dirty).
var moduleVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// modulePath is a conservative check of a module path: the characters Go
// allows in import paths, no leading slash or dot, no empty element.
var modulePath = regexp.MustCompile(`^[A-Za-z0-9_~-][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*$`)

// initFiles returns the files to write, by name relative to dir: the
// template's and a go.mod for the module.
func initFiles(dir, module, version, replace string) (map[string][]byte, error) {
	if module == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		module = filepath.Base(abs)
	}
	if !modulePath.MatchString(module) || strings.Contains(module, "..") {
		return nil, fmt.Errorf("init: %q is not a usable module path: name one with --module, e.g. example.com/myapp", module)
	}
	files := map[string][]byte{}
	err := fs.WalkDir(examples.Quickstart, "quickstart", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(examples.Quickstart, p)
		files[path.Base(p)] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("init: reading the embedded template: %w", err)
	}
	mod := "module " + module + "\n\ngo " + goVersion(runtime.Version()) + "\n\nrequire " + slitherModule + " " + version + "\n"
	if replace != "" {
		abs, err := filepath.Abs(replace)
		if err != nil {
			return nil, fmt.Errorf("init: --replace: %w", err)
		}
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
			return nil, fmt.Errorf("init: --replace %s is not a module checkout: %w", replace, err)
		}
		if strings.ContainsAny(abs, " \t\"'`\\()") { // go.mod takes such a path only quoted
			abs = strconv.Quote(abs)
		}
		mod += "\nreplace " + slitherModule + " => " + abs + "\n"
	}
	files["go.mod"] = []byte(mod)
	return files, nil
}

// goVersion is the go line for the new module: the toolchain that built
// this binary, which built Slither, so it is new enough for it.
func goVersion(runtimeVersion string) string {
	if m := regexp.MustCompile(`go(\d+\.\d+(\.\d+)?)`).FindStringSubmatch(runtimeVersion); m != nil {
		return m[1]
	}
	return "1.26.0" // a development toolchain without a release number: this module's own go line
}

// writeNew writes files into dir, creating it, and refuses to replace
// anything: it checks every name first, so a refusal writes nothing, and
// creates each file exclusively, so a file that appears meanwhile is not
// overwritten either.
func writeNew(dir string, files map[string][]byte) error {
	var exist []string
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			exist = append(exist, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init: %w", err)
		}
	}
	if len(exist) > 0 {
		return fmt.Errorf("init: %s already has %s; it writes nothing over existing files (choose an empty or new directory)",
			dir, strings.Join(slices.Sorted(slices.Values(exist)), ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		_, err = f.Write(files[name])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("init: writing %s: %w", name, err)
		}
	}
	return nil
}

// printNext lists what was written and the commands that come next.
func printNext(w io.Writer, dir string, files map[string][]byte) error {
	_, err := fmt.Fprintf(w, `wrote %s in %s

next, in %[2]s:
  go mod tidy
  %s
  %s
  go run .        # or go test ./...
`, strings.Join(slices.Sorted(maps.Keys(files)), " "), dir, pybuild.InstallCommand, pybuild.EnvCommand)
	return err
}
