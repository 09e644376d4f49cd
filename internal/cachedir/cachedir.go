// Package cachedir is Slither's one private cache directory: where the
// embedded Python package is written out (package python) and where `slither
// bench` leaves its measurements (package capacity). Code found there runs
// in the Go process, so the directory must be ours alone: it is created
// 0700, and on every use it is checked with Lstat to be a real directory
// (not a symlink), owned by the current user, with no access for anyone
// else. There is no shared fallback such as /tmp: without a user cache
// directory, Root fails and says how to set one.
package cachedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Env names the variable that overrides the cache root.
const Env = "SLITHER_CACHE_DIR"

// Root returns the private cache root, $SLITHER_CACHE_DIR or
// <user cache dir>/slither, creating it (0700) if needed and checking it
// with [Private] on every call.
func Root() (string, error) {
	root := os.Getenv(Env)
	if root == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("cachedir: no user cache directory (%w); set %s to a private directory", err, Env)
		}
		root = filepath.Join(c, "slither")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("cachedir: %s: %w", root, err)
	}
	// The parents (e.g. ~/.cache) are the user's; only the root itself must
	// be private.
	if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
		return "", fmt.Errorf("cachedir: %w", err)
	}
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cachedir: %w", err)
	}
	if err := Private(root); err != nil {
		return "", err
	}
	return root, nil
}

// Private checks that dir is a directory (not a symlink to one) owned by the
// current user and closed to everyone else. A directory of ours that is
// open to others (say 0755 from an older version) is narrowed to 0700:
// whatever was written there is verified by its users anyway.
func Private(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("cachedir: %w", err)
	}
	if err := Owned(dir, st); err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("cachedir: %s is not a directory (%v)", dir, st.Mode().Type())
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("cachedir: %s is open to other users (%v) and cannot be made private: %w", dir, st.Mode().Perm(), err)
		}
	}
	return nil
}

// Owned checks an Lstat result: not a symlink, owned by the current user,
// and writable by nobody else.
func Owned(path string, st fs.FileInfo) error {
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("cachedir: %s is a symlink; refusing to use it (remove it, or set %s)", path, Env)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("cachedir: %s: cannot read its owner", path)
	}
	if uid := os.Getuid(); int(sys.Uid) != uid {
		return fmt.Errorf("cachedir: %s belongs to uid %d, not to this user (uid %d); refusing to use it (remove it, or set %s)",
			path, sys.Uid, uid, Env)
	}
	if st.Mode().Perm()&0o022 != 0 && !st.IsDir() {
		return fmt.Errorf("cachedir: %s is writable by other users (%v); refusing to use it", path, st.Mode().Perm())
	}
	return nil
}

// WriteFile writes data to path atomically: into a fresh temporary file of
// a unique name in path's directory, then renamed over path, so a reader
// never sees half a file and nothing planted at a predictable temporary
// name is followed.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
