package pins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors a caller can test with errors.Is.
var (
	// ErrNotBPFFS means a path is not below any bpffs mount.
	ErrNotBPFFS = errors.New("not on a BPF filesystem")
	// ErrEscape means a path would leave its bpffs, through "..".
	ErrEscape = errors.New("path leaves the BPF filesystem")
	// ErrSymlink means a path passes through a symlink.
	ErrSymlink = errors.New("path goes through a symlink")
	// ErrCrossMount means two paths are on different bpffs mounts.
	ErrCrossMount = errors.New("paths are on different BPF filesystems")
	// ErrMountRoot means an operation would remove or replace a mount's root.
	ErrMountRoot = errors.New("path is the root of a BPF filesystem")
	// ErrIsDir means a directory was given where a pin was expected.
	ErrIsDir = errors.New("is a directory")
	// ErrMountChanged means the mount at a path changed between reading the
	// mount table and opening it: a directory above it was renamed or
	// swapped, or a mount came or went.
	ErrMountChanged = errors.New("the mount changed while it was opened")
)

// Location is a checked path inside one bpffs mount.
type Location struct {
	// Path is the absolute path as the caller gave it, cleaned.
	Path string
	// Mount is the mountpoint of the bpffs that holds Path.
	Mount string
	// Rel is Path relative to Mount: "." for the mount's root.
	Rel string
	// MountID is the mount's id in /proc/self/mountinfo, which statx
	// reports as STATX_MNT_ID.
	MountID int
}

// Dir is the directory that holds the location, relative to Mount.
func (l Location) Dir() string { return filepath.Dir(l.Rel) }

// Base is the last element of the location.
func (l Location) Base() string { return filepath.Base(l.Rel) }

// Locate checks path and finds the bpffs mount it lies on (of mounts
// stacked on one path, the top one), with statx: no mountinfo parse. It
// does not require the path to exist, and opens nothing: every operation of this package then opens
// the mount's root once and checks it against MountID.
func Locate(path string) (Location, error) {
	if path == "" {
		return Location{}, fmt.Errorf("empty path: give a path on a bpffs, e.g. /sys/fs/bpf/NAME")
	}
	for _, elem := range strings.Split(path, "/") {
		if elem == ".." {
			return Location{}, fmt.Errorf("%s: %w: \"..\" is not allowed in pin paths", path, ErrEscape)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Location{}, fmt.Errorf("%s: %w", path, err)
	}
	best, id, err := mountRoot(abs)
	if err != nil {
		return Location{}, err
	}
	if best == "" {
		if link := symlinkIn(abs); link != "" {
			return Location{}, symlinkError(abs, link)
		}
		return Location{}, fmt.Errorf("%s: %w (mount one with: mount -t bpf bpf DIR)", abs, ErrNotBPFFS)
	}
	rel, err := filepath.Rel(best, abs)
	if err != nil {
		return Location{}, fmt.Errorf("%s: %w", abs, err)
	}
	return Location{Path: abs, Mount: best, Rel: rel, MountID: id}, nil
}

// mountRoot finds the root of the mount abs (or, if abs does not exist,
// its deepest existing ancestor) lies on, and returns it with the mount's
// id if that mount is a bpffs, or "" if it is not.
func mountRoot(abs string) (string, int, error) {
	p := abs
	var stx unix.Statx_t
	for {
		err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) || p == "/" {
			return "", 0, fmt.Errorf("%s: %w", p, err)
		}
		p = filepath.Dir(p)
	}
	id := stx.Mnt_id
	for p != "/" && !(stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0) {
		up := filepath.Dir(p)
		var ustx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, up, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &ustx); err != nil {
			return "", 0, fmt.Errorf("%s: %w", up, err)
		}
		if ustx.Mnt_id != id {
			break // p is the mount's root
		}
		p, stx = up, ustx
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		return "", 0, fmt.Errorf("%s: %w", p, err)
	}
	if sfs.Type != unix.BPF_FS_MAGIC {
		return "", 0, nil
	}
	return p, int(id), nil
}

// resolveFlags confine every lookup to one bpffs mount, with no symlinks.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openMount opens the root of l's mount, once, and checks that the fd is
// what Locate found: the root of a bpffs, of the mount l names. The path
// is resolved from "/" without following any symlink, so a user who owns a
// directory above the mount cannot redirect the open to another
// filesystem; renaming that directory at the wrong moment makes the check
// fail instead. Every later lookup is relative to the returned O_PATH fd.
func openMount(l Location) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, l.Mount, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ELOOP):
		link := symlinkIn(l.Mount)
		if link == "" {
			link = l.Mount
		}
		return -1, symlinkError(l.Path, link)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return -1, fmt.Errorf("%s: %w: %s is gone", l.Path, ErrMountChanged, l.Mount)
	case err != nil:
		return -1, fmt.Errorf("open %s: %w", l.Mount, err)
	}
	if err := checkMount(fd, l); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// checkMount checks that fd is the root of the bpffs mount l names.
func checkMount(fd int, l Location) error {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", l.Mount, err)
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return fmt.Errorf("statx %s: %w", l.Mount, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 || stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return fmt.Errorf("%s: the kernel does not report mount ids (Linux 5.8 or later does)", l.Mount)
	}
	switch {
	case stx.Mnt_id != uint64(l.MountID):
		return fmt.Errorf("%s: %w: mount id %d at %s, it was %d", l.Path, ErrMountChanged, stx.Mnt_id, l.Mount, l.MountID)
	case stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0:
		return fmt.Errorf("%s: %w: %s is not the root of its mount", l.Path, ErrMountChanged, l.Mount)
	case sfs.Type != unix.BPF_FS_MAGIC:
		return fmt.Errorf("%s: %w: %s is not a bpffs", l.Path, ErrMountChanged, l.Mount)
	}
	return nil
}

// openRoot finds the bpffs of path and opens its root. A mount that moved
// between Locate and the open is looked up again, a few times.
func openRoot(path string) (*Dir, Location, error) {
	var err error
	for range 3 {
		var l Location
		if l, err = Locate(path); err != nil {
			return nil, l, err
		}
		var fd int
		if fd, err = openMount(l); err == nil {
			return &Dir{path: l.Mount, fd: fd, root: true}, l, nil
		}
		if !errors.Is(err, ErrMountChanged) {
			return nil, l, err
		}
	}
	return nil, Location{}, fmt.Errorf("%w; is someone renaming a directory above it?", err)
}

// symlinkIn returns the first component of the absolute path abs that is a
// symlink, or "". It only words error messages: the kernel is what refuses.
func symlinkIn(abs string) string {
	p := "/"
	for _, elem := range strings.Split(abs, "/") {
		if elem == "" {
			continue
		}
		p = filepath.Join(p, elem)
		fi, err := os.Lstat(p)
		if err != nil {
			return ""
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return p
		}
	}
	return ""
}

func symlinkError(path, link string) error {
	if path == link {
		return fmt.Errorf("%s: %w: it is a symlink, and symlinks are not followed; give the real path", path, ErrSymlink)
	}
	return fmt.Errorf("%s: %w: %s is a symlink, and symlinks are not followed; give the real path", path, ErrSymlink, link)
}
