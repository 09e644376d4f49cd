// Package python carries Slither's Python package (python/slither) inside the
// Go binary, so a program built with this module needs no checkout of the
// repository at run time. [Dir] writes it out once per content version.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// FS holds the slither package: slither/__init__.py and its modules.
//
//go:embed slither/*.py
var FS embed.FS

var (
	dirOnce sync.Once
	dir     string
	dirErr  error
)

// Dir returns a directory to put on sys.path so that `import slither` finds
// the embedded package. The files are written under the user cache directory
// (or $SLITHER_CACHE_DIR), in a folder named by their content hash, so
// different versions never mix and an existing copy is reused. Safe for
// concurrent use; the work is done once per process.
func Dir() (string, error) {
	dirOnce.Do(func() {
		root := os.Getenv("SLITHER_CACHE_DIR")
		if root == "" {
			c, err := os.UserCacheDir()
			if err != nil {
				c = os.TempDir()
			}
			root = filepath.Join(c, "slither")
		}
		dir, dirErr = extract(root)
	})
	return dir, dirErr
}

// extract writes the package under root, unless an identical copy is there.
func extract(root string) (string, error) {
	h := sha256.New()
	var files []string
	err := fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, p)
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("python: reading embedded package: %w", err)
	}
	target := filepath.Join(root, "python-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(target, "slither", "__init__.py")); err == nil {
		return target, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("python: cache directory: %w", err)
	}
	tmp, err := os.MkdirTemp(root, ".python-*")
	if err != nil {
		return "", fmt.Errorf("python: cache directory: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after a successful rename
	for _, p := range files {
		b, _ := FS.ReadFile(p)
		dst := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", fmt.Errorf("python: writing %s: %w", p, err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return "", fmt.Errorf("python: writing %s: %w", p, err)
		}
	}
	// Atomic publish; losing a race to another process leaves its identical copy.
	if err := os.Rename(tmp, target); err != nil {
		if _, statErr := os.Stat(filepath.Join(target, "slither", "__init__.py")); statErr == nil {
			return target, nil
		}
		return "", fmt.Errorf("python: publishing %s: %w", target, err)
	}
	return target, nil
}
