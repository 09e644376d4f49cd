// Package pyvenv reads a Python virtual environment (the pyvenv.cfg that
// `python -m venv DIR` writes) and checks it against the interpreter that
// is to use it. It has no cgo, so the engine, the doctor and a
// CGO_ENABLED=0 build share it with the embedded runtime.
package pyvenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrMismatch is wrapped by every error saying that a virtualenv does not
// fit the interpreter that would use it: made from another Python, or a
// venv other than the one the process's interpreter already runs.
var ErrMismatch = errors.New("virtualenv does not match the Python using it")

// ErrInvalid is wrapped by every error of [Open] saying that a directory is
// not a usable virtualenv (no pyvenv.cfg, or one naming no home).
var ErrInvalid = errors.New("not a usable virtualenv")

// Venv is one virtual environment, as its pyvenv.cfg describes it.
type Venv struct {
	// Dir is the venv's absolute directory (its sys.prefix).
	Dir string
	// Home is the directory of the interpreter the venv was made from
	// (pyvenv.cfg "home").
	Home string
	// Version is that interpreter's version (pyvenv.cfg "version" or
	// "version_info"), e.g. "3.13.5".
	Version string
	// Executable is that interpreter (pyvenv.cfg "executable", written
	// since Python 3.11; empty before).
	Executable string
	// SystemSite is include-system-site-packages.
	SystemSite bool
}

// Is reports whether dir holds a pyvenv.cfg.
func Is(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "pyvenv.cfg"))
	return err == nil && st.Mode().IsRegular()
}

// Open reads dir/pyvenv.cfg.
func Open(dir string) (*Venv, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("virtualenv %s: %w: %w", dir, ErrInvalid, err)
	}
	f, err := os.Open(filepath.Join(abs, "pyvenv.cfg"))
	if err != nil {
		return nil, fmt.Errorf("virtualenv %s: %w: not a venv (create it with `python3.13t -m venv %s`): %w", abs, ErrInvalid, abs, err)
	}
	defer f.Close()
	v := &Venv{Dir: filepath.Clean(abs)}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(k) {
		case "home":
			v.Home = val
		case "version", "version_info":
			v.Version = val
		case "executable":
			v.Executable = val
		case "include-system-site-packages":
			v.SystemSite = strings.EqualFold(val, "true")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("virtualenv %s: %w: reading pyvenv.cfg: %w", abs, ErrInvalid, err)
	}
	if v.Home == "" {
		return nil, fmt.Errorf("virtualenv %s: %w: pyvenv.cfg names no home (the Python it was made from)", abs, ErrInvalid)
	}
	return v, nil
}

// Python is the venv's interpreter, bin/python.
func (v *Venv) Python() string { return filepath.Join(v.Dir, "bin", "python") }

// SitePackages is the venv's site-packages for a standard library
// directory name such as "python3.13t".
func (v *Venv) SitePackages(stdlibName string) string {
	return filepath.Join(v.Dir, "lib", stdlibName, "site-packages")
}

// Check reports, wrapping [ErrMismatch], whether the venv was made from
// another Python than exe (the base interpreter, e.g.
// /opt/py/bin/python3.13t) of version (e.g. "3.13.5"; major.minor is
// compared). A free-threaded and a GIL interpreter installed side by side
// (python3.13t, python3.13) differ by name, so a venv of one does not pass
// for the other.
func (v *Venv) Check(exe, version string) error {
	want := resolve(filepath.Dir(exe))
	got := resolve(v.Home)
	var diffs []string
	if got != want {
		diffs = append(diffs, fmt.Sprintf("made from the Python in %s, not %s", v.Home, filepath.Dir(exe)))
	}
	if v.Executable != "" && !sameFile(v.Executable, exe) {
		diffs = append(diffs, fmt.Sprintf("made by %s, not %s", v.Executable, exe))
	}
	if v.Version != "" && majorMinor(v.Version) != majorMinor(version) {
		diffs = append(diffs, fmt.Sprintf("Python %s, not %s", v.Version, version))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: venv %s: %s; recreate it with `%s -m venv %s`",
			ErrMismatch, v.Dir, strings.Join(diffs, "; "), exe, v.Dir)
	}
	return nil
}

// sameFile compares by file identity (an installation may hard-link
// python3.13 to python3.13t), by resolved name when one cannot be read.
func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return resolve(a) == resolve(b)
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

func majorMinor(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return version
	}
	return parts[0] + "." + parts[1]
}
