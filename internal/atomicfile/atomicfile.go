package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

var (
	// ErrSymlink means the target path is a symbolic link.
	ErrSymlink = errors.New("is a symbolic link: refusing to write through it (give the path of the real file)")
	// ErrNotRegular means the target exists and is not a regular file.
	ErrNotRegular = errors.New("is not a regular file")
)

// Write replaces path with data, with permission bits perm, through a
// temporary file in the same directory that is synced and renamed over it.
// The directory is created if needed. A path that is a symlink, or anything
// but a regular file, is refused and left as it is.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteChecked(path, data, perm, nil)
}

// WriteChecked is Write with a check of the complete temporary file (by
// its name) before it replaces path; if check fails, path is left as it is.
func WriteChecked(path string, data []byte, perm fs.FileMode, check func(tmp string) error) error {
	if err := checkTarget(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// CreateTemp opens with O_CREAT|O_EXCL: a name planted in the meantime
	// makes it pick another one, never follow it.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close() // a second Close only returns an error
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if check != nil {
		if err := check(tmp.Name()); err != nil {
			return err
		}
	}
	// Checked again: rename replaces a symlink planted since then rather
	// than following it, but the caller asked for the real file.
	if err := checkTarget(path); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	renamed = true
	syncDir(dir)
	return nil
}

// checkTarget refuses a path that exists as anything but a regular file.
func checkTarget(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s %w", path, ErrSymlink)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	return nil
}

// syncDir makes the rename durable; a failure only weakens durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// OpenLog opens path for appending, creating it with mode 0600. It refuses
// a symlink (O_NOFOLLOW) and anything but a regular file; O_NONBLOCK keeps a
// FIFO planted there from blocking the open.
func OpenLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("log %s %w", path, ErrSymlink)
		}
		if errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("log %s %w (a FIFO)", path, ErrNotRegular)
		}
		return nil, fmt.Errorf("log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("log %s %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	return f, nil
}
