package pins

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
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
)

// Location is a checked path inside one bpffs mount.
type Location struct {
	// Path is the absolute path as the caller gave it, cleaned.
	Path string
	// Mount is the mountpoint of the bpffs that holds Path.
	Mount string
	// Rel is Path relative to Mount: "." for the mount's root.
	Rel string
}

// Dir is the directory that holds the location, relative to Mount.
func (l Location) Dir() string { return filepath.Dir(l.Rel) }

// Base is the last element of the location.
func (l Location) Base() string { return filepath.Base(l.Rel) }

// Locate checks path and finds the bpffs mount it lies on. It does not
// require the path to exist.
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
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("bpf"))
	if err != nil {
		return Location{}, fmt.Errorf("read mountinfo: %w", err)
	}
	best := ""
	for _, m := range mounts {
		// Later entries shadow earlier ones at the same mountpoint; >= keeps
		// the visible one.
		if within(abs, m.Mountpoint) && len(m.Mountpoint) >= len(best) {
			best = m.Mountpoint
		}
	}
	if best == "" {
		return Location{}, fmt.Errorf("%s: %w (mount one with: mount -t bpf bpf DIR)", abs, ErrNotBPFFS)
	}
	rel, err := filepath.Rel(best, abs)
	if err != nil {
		return Location{}, fmt.Errorf("%s: %w", abs, err)
	}
	return Location{Path: abs, Mount: best, Rel: rel}, nil
}

func within(path, dir string) bool {
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// resolveFlags confine every lookup to one bpffs mount, with no symlinks.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openDir opens the directory rel (relative to the mount) for the
// *at system calls. The kernel enforces that the lookup stays on the mount
// and crosses no symlink.
func (l Location) openDir(rel string) (int, error) {
	root, err := unix.Open(l.Mount, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", l.Mount, err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	})
	if err != nil {
		return -1, l.lookupError(rel, err)
	}
	return fd, nil
}

func (l Location) lookupError(rel string, err error) error {
	p := filepath.Join(l.Mount, rel)
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: %w; give the real path", p, ErrSymlink)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: %w", p, ErrEscape)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", p, os.ErrNotExist)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: not a directory", p)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// lstatAt stats name in dirfd without following a final symlink.
func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}
