// Package pybuild finds, checks and builds the free-threaded CPython that
// Slither embeds, and computes the environment cgo needs to link against it.
// It is pure Go, so `slither python install` and `slither python env` work
// in a CGO_ENABLED=0 build of the command, before anything that needs cgo
// can compile. The build itself is build-python.sh, embedded here and run
// as is: `make python` calls `slither python install`, so there is one
// implementation.
package pybuild

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

//go:embed build-python.sh
var script []byte

// DefaultVersion is the CPython major.minor built when none is asked for.
const DefaultVersion = "3.13"

// InstallCommand and EnvCommand are the two commands that set up a machine
// to build a program that embeds Python, from any Go module. Every message
// about a missing free-threaded libpython or its headers names them (Fix).
const (
	InstallCommand = "CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither@latest python install"
	EnvCommand     = `eval "$(CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither@latest python env)"`
	Fix            = "run `" + InstallCommand + "`, then `" + EnvCommand + "` and build again"
)

// The environment variables Config reads; the Makefile's variables have the
// same names.
const (
	EnvVersion = "PY_VERSION"
	EnvPrefix  = "SLITHER_PYTHON_PREFIX"
	EnvPython  = "SLITHER_PYTHON"
)

// Config says which free-threaded CPython to use.
type Config struct {
	// Version is the CPython major.minor ("3.13"); empty means
	// DefaultVersion.
	Version string
	// Prefix is where the build is installed; empty means
	// ~/.cache/slither/cpython-<Version>t.
	Prefix string
	// Python, when set, is an existing free-threaded interpreter to use
	// instead of a build under Prefix (checked, never built).
	Python string
}

// FromEnv returns the Config that PY_VERSION, SLITHER_PYTHON_PREFIX and
// SLITHER_PYTHON describe.
func FromEnv() Config {
	return Config{Version: os.Getenv(EnvVersion), Prefix: os.Getenv(EnvPrefix), Python: os.Getenv(EnvPython)}
}

var versionRE = regexp.MustCompile(`^3\.[0-9]+$`)

// resolve fills in the defaults and checks the version's form (it becomes
// part of paths and of a Debian package name).
func (c Config) resolve() (Config, error) {
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if !versionRE.MatchString(c.Version) {
		return c, fmt.Errorf("pybuild: Python version %q is not of the form 3.N (e.g. %s)", c.Version, DefaultVersion)
	}
	if c.Prefix == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("pybuild: no home directory for the default prefix (%w); set %s", err, EnvPrefix)
		}
		c.Prefix = filepath.Join(home, ".cache", "slither", "cpython-"+c.Version+"t")
	}
	abs, err := filepath.Abs(c.Prefix)
	if err != nil {
		return c, fmt.Errorf("pybuild: prefix %s: %w", c.Prefix, err)
	}
	c.Prefix = abs
	return c, nil
}

// Interpreter returns the path of the free-threaded interpreter c names:
// Python if set, else <Prefix>/bin/python<Version>t. It does not check that
// the file exists.
func (c Config) Interpreter() (string, error) {
	if c.Python != "" {
		return c.Python, nil
	}
	c, err := c.resolve()
	if err != nil {
		return "", err
	}
	return filepath.Join(c.Prefix, "bin", "python"+c.Version+"t"), nil
}

// Install builds the free-threaded CPython c names, or checks the one
// already there, by running the embedded build script with bash; its
// progress goes to stderr. A second run finds the cached build and returns
// at once.
func Install(ctx context.Context, c Config, stdout, stderr io.Writer) error {
	c, err := c.resolve()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "slither-build-python-*.sh")
	if err != nil {
		return fmt.Errorf("pybuild: writing the build script: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(script); err != nil {
		f.Close()
		return fmt.Errorf("pybuild: writing the build script %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pybuild: writing the build script %s: %w", f.Name(), err)
	}
	cmd := exec.CommandContext(ctx, "bash", f.Name())
	cmd.Env = append(os.Environ(), "PREFIX="+c.Prefix, "PY_VERSION="+c.Version, "SLITHER_PYTHON="+c.Python)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Cancelling must stop the whole build (make -j, apt-get), not bash
	// alone: the script runs in its own process group, killed as one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pybuild: building or checking the free-threaded CPython %s (prefix %s): %w", c.Version, c.Prefix, err)
	}
	return nil
}

// Link is where cgo finds the free-threaded CPython: the pkg-config
// directory holding python3-embed.pc, and the directory holding libpython
// (the rpath built programs load it through).
type Link struct {
	PkgConfigDir string
	LibDir       string
}

// Locate finds the Link of the installed CPython c names. It fails, naming
// the command that installs it, when that CPython is missing or is not a
// free-threaded build.
func Locate(ctx context.Context, c Config) (Link, error) {
	if c.Python == "" {
		c, err := c.resolve()
		if err != nil {
			return Link{}, err
		}
		py, _ := c.Interpreter()
		l := Link{PkgConfigDir: filepath.Join(c.Prefix, "lib", "pkgconfig"), LibDir: filepath.Join(c.Prefix, "lib")}
		for _, p := range []string{py, filepath.Join(l.PkgConfigDir, "python-"+c.Version+"t-embed.pc")} {
			if _, err := os.Stat(p); err != nil {
				return Link{}, fmt.Errorf("pybuild: no free-threaded CPython %s installed in %s (%w): run `slither python install` first (from any module: %s)", c.Version, c.Prefix, err, InstallCommand)
			}
		}
		return l, nil
	}
	// An existing interpreter says where its files are.
	out, err := exec.CommandContext(ctx, c.Python, "-c",
		`import sysconfig as s; print(s.get_config_var("LIBPC")); print(s.get_config_var("LIBDIR")); print(1 if s.get_config_var("Py_GIL_DISABLED") else 0)`).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return Link{}, fmt.Errorf("pybuild: asking the python %s (--python or %s) where its libpython is: %w", c.Python, EnvPython, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		return Link{}, fmt.Errorf("pybuild: the python %s: unexpected sysconfig answer %q", c.Python, out)
	}
	if lines[2] != "1" {
		return Link{}, fmt.Errorf("pybuild: the python %s (--python or %s) is not a free-threaded build (Py_GIL_DISABLED is not set); leave both unset to build one with %s", c.Python, EnvPython, InstallCommand)
	}
	if lines[0] == "None" || lines[1] == "None" {
		return Link{}, fmt.Errorf("pybuild: the python %s has no LIBPC or LIBDIR in its sysconfig (not a shared, installed build?)", c.Python)
	}
	return Link{PkgConfigDir: lines[0], LibDir: lines[1]}, nil
}

// Shells lists the shells Exports writes for.
var Shells = []string{"sh", "fish", "make"}

// Exports returns the lines that set, in the given shell ("sh", "fish" or
// "make"), the environment cgo needs to build against l: PKG_CONFIG_PATH
// (cgo's `pkg-config: python3-embed` finds the headers and libpython), an
// rpath in CGO_LDFLAGS (so the built program loads that libpython with no
// LD_LIBRARY_PATH), and CGO_ENABLED=1. Values already set are kept after
// ours.
func Exports(l Link, shell string) (string, error) {
	// cgo splits CGO_LDFLAGS at blanks (honouring its own quotes, which no
	// shell quoting carries through) and the linker splits -Wl, at commas:
	// a libdir holding either cannot become an rpath.
	if strings.ContainsAny(l.LibDir, " \t\n'\"\\,") {
		return "", fmt.Errorf("pybuild: the library directory %q holds a blank, quote, backslash or comma, which cannot pass through CGO_LDFLAGS as an rpath: install into a prefix without them (--prefix)", l.LibDir)
	}
	rpath := "-Wl,-rpath," + l.LibDir
	switch shell {
	case "sh", "":
		return "export PKG_CONFIG_PATH=" + shQuote(l.PkgConfigDir) + `"${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"` + "\n" +
			"export CGO_LDFLAGS=" + shQuote(rpath) + `"${CGO_LDFLAGS:+ $CGO_LDFLAGS}"` + "\n" +
			"export CGO_ENABLED=1\n", nil
	case "fish":
		return "set -gx PKG_CONFIG_PATH " + fishQuote(l.PkgConfigDir) + " $PKG_CONFIG_PATH\n" +
			"set -gx CGO_LDFLAGS (string join ' ' -- " + fishQuote(rpath) + " $CGO_LDFLAGS)\n" +
			"set -gx CGO_ENABLED 1\n", nil
	case "make":
		if strings.ContainsAny(l.PkgConfigDir+l.LibDir, " \t\n#") {
			return "", fmt.Errorf("pybuild: make cannot hold the paths %q and %q (blanks or #)", l.PkgConfigDir, l.LibDir)
		}
		esc := func(s string) string { return strings.ReplaceAll(s, "$", "$$") }
		return "export PKG_CONFIG_PATH := " + esc(l.PkgConfigDir) + "$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))\n" +
			"export CGO_LDFLAGS := " + esc(rpath) + " $(CGO_LDFLAGS)\n" +
			"export CGO_ENABLED := 1\n", nil
	}
	return "", fmt.Errorf("pybuild: unknown shell %q (want one of %s)", shell, strings.Join(Shells, ", "))
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
