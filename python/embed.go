// Package python carries Slither's Python package (python/slither) inside the
// Go binary, so a program built with this module needs no checkout of the
// repository at run time. [Dir] writes it out once per content version.
package python

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/slither-go/slither/internal/cachedir"
)

// FS holds the slither package: slither/__init__.py and its modules.
//
//go:embed slither/*.py
var FS embed.FS

// Dir returns a directory to put on sys.path so that `import slither` finds
// the embedded package. The files live in the private cache directory
// ($SLITHER_CACHE_DIR or the user cache directory, see internal/cachedir),
// in a folder named by their content hash, so different versions never mix.
// Code there runs in this process, so every call checks the directory (a
// real directory of this user's, not a symlink, closed to others) and the
// copy (every file identical to the embedded bytes, nothing else in it but
// Python's __pycache__); a copy that fails is replaced, and a cache directory
// that fails is an error. Safe for concurrent use, also across processes.
func Dir() (string, error) {
	root, err := cachedir.Root()
	if err != nil {
		return "", fmt.Errorf("python: %w", err)
	}
	return extract(root)
}

// extract writes the package under root, unless a verified identical copy
// is there.
func extract(root string) (string, error) {
	files, err := embedded()
	if err != nil {
		return "", err
	}
	if err := cachedir.Private(root); err != nil {
		return "", fmt.Errorf("python: %w", err)
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.path, len(f.data))
		h.Write(f.data)
	}
	target := filepath.Join(root, "python-"+hex.EncodeToString(h.Sum(nil))[:16])
	verr := verify(target, files)
	if verr == nil {
		return target, nil
	}
	if _, err := os.Lstat(target); err == nil {
		// Not the copy we wrote (partial, damaged or tampered with): move
		// it aside in one step, so the good copy replaces it at the same
		// path, then delete it (RemoveAll never follows a symlink).
		aside, err := os.MkdirTemp(root, ".bad-*")
		if err == nil {
			err = os.Rename(target, filepath.Join(aside, "copy"))
			defer os.RemoveAll(aside)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("python: replacing a bad copy (%v): %w", verr, err)
		}
	}
	tmp, err := os.MkdirTemp(root, ".python-*")
	if err != nil {
		return "", fmt.Errorf("python: cache directory: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after a successful rename
	for _, f := range files {
		dst := filepath.Join(tmp, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return "", fmt.Errorf("python: writing %s: %w", f.path, err)
		}
		if err := os.WriteFile(dst, f.data, 0o600); err != nil {
			return "", fmt.Errorf("python: writing %s: %w", f.path, err)
		}
	}
	// Atomic publish; losing a race to another process leaves its copy,
	// which must pass the same verification.
	if err := os.Rename(tmp, target); err != nil {
		if verify(target, files) == nil {
			return target, nil
		}
		return "", fmt.Errorf("python: publishing %s: %w", target, err)
	}
	if err := verify(target, files); err != nil {
		return "", err
	}
	return target, nil
}

type file struct {
	path string // slash-separated, relative to the copy's root
	data []byte
}

func embedded() ([]file, error) {
	var files []file
	err := fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(p)
		files = append(files, file{p, b})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("python: reading embedded package: %w", err)
	}
	return files, nil
}

// verify checks the copy at target: every entry a real file or directory of
// this user's (Lstat: symlinks are refused, never followed), every embedded
// file there with identical bytes, and no other file except inside
// __pycache__ directories (Python's bytecode cache, which Python validates
// against the sources).
func verify(target string, files []file) error {
	st, err := os.Lstat(target)
	if err != nil {
		return fmt.Errorf("python: %w", err)
	}
	if err := cachedir.Owned(target, st); err != nil {
		return fmt.Errorf("python: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("python: %s is not a directory", target)
	}
	want := map[string][]byte{}
	dirs := map[string]bool{".": true}
	for _, f := range files {
		want[f.path] = f.data
		for d := filepath.Dir(filepath.FromSlash(f.path)); d != "."; d = filepath.Dir(d) {
			dirs[filepath.ToSlash(d)] = true
		}
	}
	seen := 0
	err = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		rel, rerr := filepath.Rel(target, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if err != nil {
			return err
		}
		inCache := slices.Contains(strings.Split(rel, "/"), "__pycache__")
		info, err := d.Info() // Lstat: a symlink shows as one
		if inCache && errors.Is(err, fs.ErrNotExist) {
			return nil // Python's temporary bytecode file, renamed meanwhile
		}
		if err != nil {
			return err
		}
		if err := cachedir.Owned(p, info); err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if !dirs[rel] && !inCache {
				return fmt.Errorf("%s: unexpected directory in the package copy", p)
			}
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s: not a regular file (%v)", p, info.Mode().Type())
		case inCache:
		default:
			data, ok := want[rel]
			if !ok {
				return fmt.Errorf("%s: unexpected file in the package copy", p)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				return fmt.Errorf("%s differs from the embedded file", p)
			}
			seen++
		}
		return nil
	})
	if err == nil && seen != len(files) {
		err = fmt.Errorf("%d of %d files are missing", len(files)-seen, len(files))
	}
	if err != nil {
		return fmt.Errorf("python: the package copy in %s: %w", target, err)
	}
	return nil
}
