package pybuild

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/slither-go/slither/internal/pyvenv"
	"github.com/slither-go/slither/python"
)

// BundleMarker is the file that makes a directory a runtime bundle (see
// [MakeBundle]); a program finds its bundle by it ([BundledPython]). It is
// written last, so a directory holding it is complete.
const BundleMarker = "slither-bundle.json"

// bundleInfo is the marker's content.
type bundleInfo struct {
	Python  string `json:"python"`  // the interpreter, relative to the bundle
	Version string `json:"version"` // CPython major.minor
}

// bundleSkip are standard-library directories a deployed program never
// uses: the IDE, the GUI toolkit and its demos. (copyTree also leaves out
// config-*, the static library and build files for compiling extensions,
// about half the installation's size.)
var bundleSkip = map[string]bool{"idlelib": true, "tkinter": true, "turtledemo": true}

// BundleExports returns the exports (as [Exports] writes them for shell)
// that build a program which loads libpython from a bundle at rel, a path
// relative to the program's own directory: PKG_CONFIG_PATH of the
// installed build (to compile), and an rpath of the literal
// $ORIGIN/rel/lib instead of the build's lib directory, so the program
// starts only beside its bundle and never reaches into the build cache.
func BundleExports(ctx context.Context, c Config, rel, shell string) (string, error) {
	if rel == "" || filepath.IsAbs(rel) || strings.ContainsAny(rel, ":\n") {
		return "", fmt.Errorf("pybuild: bundle path %q must be relative to the program's directory (e.g. pyrt)", rel)
	}
	l, err := Locate(ctx, c)
	if err != nil {
		return "", err
	}
	l.LibDir = "$ORIGIN/" + filepath.ToSlash(filepath.Clean(rel)) + "/lib"
	return Exports(l, shell)
}

// installation is what MakeBundle copies, as the interpreter reports it.
type installation struct {
	Executable  string `json:"executable"`
	LibDir      string `json:"libdir"`
	SOName      string `json:"soname"`
	Stdlib      string `json:"stdlib"`
	Version     string `json:"version"`
	FullVersion string `json:"full_version"`
	GILDisabled bool   `json:"gil_disabled"`
}

const installationQuery = `import json, sys, sysconfig as s
print(json.dumps({"executable": sys.executable, "libdir": s.get_config_var("LIBDIR"),
    "soname": s.get_config_var("INSTSONAME"), "stdlib": s.get_path("stdlib"),
    "version": "%d.%d" % sys.version_info[:2], "full_version": "%d.%d.%d" % sys.version_info[:3],
    "gil_disabled": bool(s.get_config_var("Py_GIL_DISABLED"))}))`

// MakeBundle lays out in dir a relocatable runtime for a program linked
// with [BundleExports]: lib/ holds libpython and the standard library
// (lib/python3.Nt, without idlelib, tkinter, turtledemo and the config-*
// build files), bin/ the interpreter (process pools run it), the
// site-packages of venv (if not empty; made from the same interpreter)
// and the slither package go into the bundle's site-packages. Every ELF
// file's build-machine rpath is rewritten to one relative to itself
// ($ORIGIN), so nothing in the bundle loads from the build cache. dir must
// not exist, be empty, or be an earlier bundle (replaced).
func MakeBundle(ctx context.Context, c Config, dir, venv string) error {
	if _, err := Locate(ctx, c); err != nil {
		return err
	}
	py, err := c.Interpreter()
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, py, "-I", "-c", installationQuery).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return fmt.Errorf("pybuild: asking %s for its installation: %w", py, err)
	}
	var in installation
	if err := json.Unmarshal(out, &in); err != nil {
		return fmt.Errorf("pybuild: the installation %s reports (%q): %w", py, out, err)
	}
	if !in.GILDisabled || in.SOName == "" || in.LibDir == "" {
		return fmt.Errorf("pybuild: %s is not a shared free-threaded build (soname %q, libdir %q); bundle one from %s", py, in.SOName, in.LibDir, InstallCommand)
	}
	var site string
	if venv != "" {
		v, err := pyvenv.Open(venv)
		if err != nil {
			return fmt.Errorf("pybuild: bundling venv: %w", err)
		}
		if err := v.Check(in.Executable, in.FullVersion); err != nil {
			return fmt.Errorf("pybuild: bundling venv: %w", err)
		}
		site = v.SitePackages(filepath.Base(in.Stdlib))
	}
	if err := emptyBundleDir(dir); err != nil {
		return err
	}

	stdlib := filepath.Join(dir, "lib", filepath.Base(in.Stdlib))
	exe := filepath.Join(dir, "bin", filepath.Base(in.Executable))
	libpy := filepath.Join(dir, "lib", in.SOName)
	steps := []func() error{
		func() error { return copyFile(filepath.Join(in.LibDir, in.SOName), libpy) },
		func() error { return copyFile(in.Executable, exe) },
		func() error { return copyTree(in.Stdlib, stdlib, true) },
		func() error { return setRunpath(exe, "$ORIGIN/../lib") },
		func() error { return setRunpath(libpy, "$ORIGIN") },
		func() error { return fixExtensions(filepath.Join(stdlib, "lib-dynload")) },
	}
	if site != "" {
		steps = append(steps, func() error { return copyTree(site, filepath.Join(stdlib, "site-packages"), false) })
	}
	steps = append(steps, func() error {
		return writeFS(python.FS, filepath.Join(stdlib, "site-packages"))
	}, func() error {
		b, err := json.Marshal(bundleInfo{Python: filepath.ToSlash(filepath.Join("bin", filepath.Base(in.Executable))), Version: in.Version})
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, BundleMarker), append(b, '\n'), 0o644)
	})
	for _, step := range steps {
		err := ctx.Err()
		if err == nil {
			err = step()
		}
		if err != nil {
			// Half a bundle would have no marker, and the next run would
			// refuse the directory: remove what this run wrote (dir was
			// empty, or an earlier bundle, when it began).
			_ = removeBundle(dir)
			return fmt.Errorf("pybuild: bundle %s: %w", dir, err)
		}
	}
	return nil
}

// bundleEntries are the only names a bundle holds at its top.
var bundleEntries = []string{"bin", "lib", BundleMarker}

// removeBundle removes what a bundle writes in dir (and dir, if then empty).
func removeBundle(dir string) error {
	for _, name := range bundleEntries {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	return nil
}

// emptyBundleDir makes dir an empty directory: new, already empty, or an
// earlier bundle (removed first). Anything else is refused, never deleted.
func emptyBundleDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("pybuild: bundle directory: %w", err)
	case len(ents) == 0:
	default:
		if _, err := os.Stat(filepath.Join(dir, BundleMarker)); err != nil {
			return fmt.Errorf("pybuild: bundle directory %s is not empty and holds no %s (not an earlier bundle); choose a new one", dir, BundleMarker)
		}
		// Only what a bundle holds is removed: anything else a user put
		// there makes the directory not an earlier bundle.
		for _, e := range ents {
			if !slices.Contains(bundleEntries, e.Name()) {
				return fmt.Errorf("pybuild: bundle directory %s holds %s, which no bundle does: not replacing it; choose a new one", dir, e.Name())
			}
		}
		if err := removeBundle(dir); err != nil {
			return fmt.Errorf("pybuild: replacing the earlier bundle %s: %w", dir, err)
		}
	}
	return os.MkdirAll(dir, 0o755)
}

// copyTree copies the regular files and directories under src into dst,
// keeping modes and modification times (so Python's bytecode caches stay
// valid); symlinks are copied as links. With stdlib, bundleSkip entries,
// config-* directories and the base installation's site-packages contents
// are left out.
func copyTree(src, dst string, stdlib bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if stdlib && d.IsDir() && rel != "." && !strings.Contains(rel, string(filepath.Separator)) &&
			(bundleSkip[rel] || strings.HasPrefix(rel, "config-")) {
			return fs.SkipDir
		}
		if stdlib && strings.HasPrefix(rel, "site-packages"+string(filepath.Separator)) {
			return nil // the base's own packages: the venv's (if any) replace them
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(p, target)
		}
		return nil // sockets and the like have no place in a bundle
	})
}

// copyFile copies a regular file (following symlinks), with its mode and
// modification time.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, st.ModTime(), st.ModTime())
}

// fixExtensions rewrites the rpath of the standard library's extension
// modules (they need no library of the installation, but their rpath
// still names the build machine's).
func fixExtensions(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".so") {
			if err := setRunpath(filepath.Join(dir, e.Name()), "$ORIGIN/../.."); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFS writes the files of fsys under dst.
func writeFS(fsys fs.FS, dst string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// setRunpath replaces, in place, the DT_RUNPATH (or DT_RPATH) string of the
// ELF file at path with value, padding with NULs: there is no patchelf
// here, and the build's rpath (an absolute cache path) is longer than any
// $ORIGIN-relative one. A file without one is left alone; a value longer
// than the old one is an error.
func setRunpath(path, value string) error {
	// Never write through a link: its target may lie outside the bundle
	// (in the build installation itself).
	if st, err := os.Lstat(path); err != nil {
		return err
	} else if !st.Mode().IsRegular() {
		return nil
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	dyn := f.Section(".dynamic")
	if dyn == nil || int(dyn.Link) >= len(f.Sections) {
		return nil // static: nothing loads through it
	}
	strs := f.Sections[dyn.Link]
	data, err := dyn.Data()
	if err != nil {
		return fmt.Errorf("%s: .dynamic: %w", path, err)
	}
	entry := 16
	if f.Class == elf.ELFCLASS32 {
		entry = 8
	}
	var offs []uint64
	for i := 0; i+entry <= len(data); i += entry {
		var tag, val uint64
		if entry == 16 {
			tag, val = f.ByteOrder.Uint64(data[i:]), f.ByteOrder.Uint64(data[i+8:])
		} else {
			tag, val = uint64(f.ByteOrder.Uint32(data[i:])), uint64(f.ByteOrder.Uint32(data[i+4:]))
		}
		if elf.DynTag(tag) == elf.DT_RUNPATH || elf.DynTag(tag) == elf.DT_RPATH {
			offs = append(offs, val)
		}
	}
	if len(offs) == 0 {
		return nil
	}
	table, err := strs.Data()
	if err != nil {
		return fmt.Errorf("%s: dynamic string table: %w", path, err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for _, off := range offs {
		if off >= uint64(len(table)) {
			w.Close()
			return fmt.Errorf("%s: rpath offset %d outside the string table", path, off)
		}
		old := table[off:]
		old = old[:bytes.IndexByte(old, 0)+1] // with its NUL; the table ends in one
		// The linker may let another string end inside this one (tail
		// merging): padding it with NULs would empty that string too.
		if name, shared := sharesTail(f, string(old[:len(old)-1])); shared {
			w.Close()
			return fmt.Errorf("%s: its rpath %q shares its bytes with the name %q; refusing to rewrite it in place", path, old[:len(old)-1], name)
		}
		if len(value) >= len(old) {
			w.Close()
			return fmt.Errorf("%s: its rpath %q is shorter than %q: install the build under a longer prefix", path, old[:len(old)-1], value)
		}
		patch := make([]byte, len(old))
		copy(patch, value)
		if _, err := w.WriteAt(patch, int64(strs.Offset+off)); err != nil {
			w.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return w.Close()
}

// sharesTail reports a name of f's dynamic string table (a symbol, a
// needed library, the soname, a version) that is a suffix of rpath, so may
// be stored inside rpath's bytes.
func sharesTail(f *elf.File, rpath string) (string, bool) {
	var names []string
	if syms, err := f.DynamicSymbols(); err == nil {
		for _, s := range syms {
			names = append(names, s.Name, s.Version, s.Library)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil {
		names = append(names, libs...)
	}
	if so, err := f.DynString(elf.DT_SONAME); err == nil {
		names = append(names, so...)
	}
	for _, n := range names {
		if n != "" && strings.HasSuffix(rpath, n) {
			return n, true
		}
	}
	return "", false
}

// BundledPython returns the interpreter of the runtime bundle this process
// runs from: the bundle whose lib/ holds the libpython the dynamic loader
// loaded (read from /proc/self/maps), so that only what the loader already
// trusted is trusted, never a directory someone put beside the program. ok
// is false when there is none (a program built without cgo loads no
// libpython, so finds no bundle). The answer is computed once per process.
func BundledPython() (python string, ok bool) {
	b := bundled()
	return b, b != ""
}

var bundled = sync.OnceValue(func() string {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return ""
	}
	return bundleOf(loadedLibpython(string(maps)))
})

// loadedLibpython returns the path of the libpython mapped in maps (the
// text of /proc/self/maps), or "".
func loadedLibpython(maps string) string {
	for _, line := range strings.Split(maps, "\n") {
		i := strings.Index(line, "/")
		if i < 0 {
			continue
		}
		if p := line[i:]; strings.HasPrefix(filepath.Base(p), "libpython3") && strings.Contains(filepath.Base(p), ".so") {
			return p
		}
	}
	return ""
}

// bundleOf returns the interpreter of the bundle whose lib/ holds libpy:
// its directory's parent must hold [BundleMarker] naming an interpreter
// inside the bundle.
func bundleOf(libpy string) string {
	if libpy == "" || filepath.Base(filepath.Dir(libpy)) != "lib" {
		return ""
	}
	root := filepath.Dir(filepath.Dir(libpy))
	b, err := os.ReadFile(filepath.Join(root, BundleMarker))
	if err != nil {
		return ""
	}
	var info bundleInfo
	if json.Unmarshal(b, &info) != nil || !filepath.IsLocal(filepath.FromSlash(info.Python)) {
		return ""
	}
	py := filepath.Join(root, filepath.FromSlash(info.Python))
	if st, err := os.Stat(py); err == nil && st.Mode().IsRegular() {
		return py
	}
	return ""
}
