package pins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/pin"
	"golang.org/x/sys/unix"
)

// Dir is a directory on a bpffs, held open. Its methods take paths
// relative to it and resolve them from its fd, confined to its mount and
// refusing symlinks, so nothing done through a Dir can be redirected by
// renaming or swapping a directory above it. OpenDir checks the mount
// once; a caller that makes many changes below one directory (preload)
// opens it once and works through it.
type Dir struct {
	path string // for messages
	fd   int
	root bool // the fd is a mount's root
}

// OpenOptions tune OpenDir.
type OpenOptions struct {
	// Create makes the directory and its parents if they are missing.
	Create bool
}

// OpenDir opens the directory path on a bpffs. The root of the mount is
// opened from "/" without following symlinks and checked against the mount
// table; the rest of the path is resolved from it.
func OpenDir(path string, opts OpenOptions) (*Dir, error) {
	root, l, err := openRoot(path)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var fd int
	if opts.Create {
		fd, err = root.mkdirAll(l.Rel)
	} else {
		fd, err = root.openDir(l.Rel)
	}
	if err != nil {
		return nil, err
	}
	return &Dir{path: l.Path, fd: fd, root: l.Rel == "."}, nil
}

// Close closes the directory.
func (d *Dir) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// FD is the directory's file descriptor, open for reading: flock works on
// it. It stays owned by d.
func (d *Dir) FD() int { return d.fd }

// Path is the directory's path as it was opened.
func (d *Dir) Path() string { return d.path }

// rel checks a path relative to d and cleans it.
func (d *Dir) rel(name string) (string, error) {
	if name == "" || filepath.IsAbs(name) {
		return "", fmt.Errorf("%q: want a path relative to %s", name, d.path)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%s: %w: \"..\" is not allowed in pin paths", filepath.Join(d.path, name), ErrEscape)
		}
	}
	return filepath.Clean(name), nil
}

func (d *Dir) show(rel string) string { return filepath.Join(d.path, rel) }

// notSelf refuses rel "." for operations that remove or replace an entry.
func (d *Dir) notSelf(rel string) error {
	if rel != "." {
		return nil
	}
	if d.root {
		return fmt.Errorf("%s: %w", d.path, ErrMountRoot)
	}
	return fmt.Errorf("%s: give a path below it", d.path)
}

// open opens rel with flags, confined to the mount and without symlinks.
func (d *Dir) open(rel string, flags uint64) (int, error) {
	fd, err := unix.Openat2(d.fd, rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return -1, d.lookupError(rel, err)
	}
	return fd, nil
}

// openDir opens the directory rel for reading and for the *at calls.
func (d *Dir) openDir(rel string) (int, error) {
	return d.open(rel, unix.O_DIRECTORY|unix.O_RDONLY)
}

// openEntry opens rel itself, a symlink included, for fstat, readlink and
// the magic links of /proc/self/fd.
func (d *Dir) openEntry(rel string) (int, error) {
	return d.open(rel, unix.O_PATH|unix.O_NOFOLLOW)
}

func (d *Dir) lookupError(rel string, err error) error {
	p := d.show(rel)
	switch {
	case errors.Is(err, unix.ELOOP):
		link := d.symlinkIn(rel)
		if link == "" {
			link = p
		}
		return symlinkError(p, link)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: %w (another filesystem is mounted on the way)", p, ErrEscape)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", p, os.ErrNotExist)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: not a directory", p)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// symlinkIn names the first symlink on rel below d, for messages.
func (d *Dir) symlinkIn(rel string) string {
	p := ""
	for _, elem := range strings.Split(rel, "/") {
		p = filepath.Join(p, elem)
		st, err := lstatAt(d.fd, p)
		if err != nil {
			return ""
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return d.show(p)
		}
	}
	return ""
}

// lstatAt stats name in dirfd without following a final symlink.
func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// Lstat returns the type bits of name (fs.ModeDir, fs.ModeSymlink, or 0
// for a pin) without following a final symlink.
func (d *Dir) Lstat(name string) (fs.FileMode, error) {
	rel, err := d.rel(name)
	if err != nil {
		return 0, err
	}
	fd, err := d.openEntry(rel)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", d.show(rel), err)
	}
	return modeType(st.Mode), nil
}

func modeType(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFREG:
		return 0
	}
	return fs.ModeIrregular
}

// Readlink returns where the symlink name points.
func (d *Dir) Readlink(name string) (string, error) {
	rel, err := d.rel(name)
	if err != nil {
		return "", err
	}
	fd, err := d.openEntry(rel)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	t, err := readlinkFD(fd)
	if err != nil {
		return "", fmt.Errorf("readlink %s: %w", d.show(rel), err)
	}
	return t, nil
}

func readlinkFD(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Symlink creates the symlink name pointing to target. Nothing in this
// package follows it.
func (d *Dir) Symlink(target, name string) error {
	rel, err := d.rel(name)
	if err != nil {
		return err
	}
	if err := d.notSelf(rel); err != nil {
		return err
	}
	pfd, err := d.openDir(filepath.Dir(rel))
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Symlinkat(target, pfd, filepath.Base(rel)); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink %s: %w", d.show(rel), os.ErrExist)
		}
		return fmt.Errorf("symlink %s: %w", d.show(rel), err)
	}
	return nil
}

// ReadDir returns the names in the directory name, sorted.
func (d *Dir) ReadDir(name string) ([]string, error) {
	rel, err := d.rel(name)
	if err != nil {
		return nil, err
	}
	fd, err := d.openDir(rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.show(rel), err)
	}
	return names, nil
}

// readNames lists the directory fd (any fd of it, O_PATH included), sorted.
func readNames(fd int) ([]string, error) {
	rfd, err := unix.Openat(fd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(rfd), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// Load opens the object pinned at name: a *ebpf.Map, *ebpf.Program or
// link.Link. A symlink is not followed.
func (d *Dir) Load(name string, opts *ebpf.LoadPinOptions) (pin.Pinner, error) {
	rel, err := d.rel(name)
	if err != nil {
		return nil, err
	}
	fd, err := d.openEntry(rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	obj, err := loadFD(fd, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.show(rel), err)
	}
	return obj, nil
}

// loadFD gets the object pinned at the inode fd holds. BPF_OBJ_GET takes a
// path and follows a final symlink; the magic link of the fd leads to the
// very inode that was checked, whatever happened to its name since.
func loadFD(fd int, opts *ebpf.LoadPinOptions) (pin.Pinner, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a pin (%v)", modeType(st.Mode))
	}
	obj, err := pin.Load("/proc/self/fd/"+strconv.Itoa(fd), opts)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	return obj, nil
}
