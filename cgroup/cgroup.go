package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

var (
	// ErrNoCgroup2 means no cgroup2 hierarchy is mounted where this
	// process can see it.
	ErrNoCgroup2 = errors.New("no cgroup2 hierarchy mounted")
	// ErrBusy means a group still had processes, or could not be removed,
	// when the time given to Remove ran out.
	ErrBusy = errors.New("cgroup busy")
	// ErrClosed means the Group was closed.
	ErrClosed = errors.New("cgroup closed")
)

// Where the cgroup2 hierarchy usually is, in the order Root prefers them.
var wellKnownRoots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// Root is the mount point of the cgroup2 hierarchy this process sees, from
// /proc/self/mountinfo: a mount of the hierarchy's root at /sys/fs/cgroup,
// then at /sys/fs/cgroup/unified, then anywhere else; or else a mount of a
// part of it.
func Root() (string, error) {
	// The usual places first: two statx calls instead of a mountinfo parse
	// on every workload start.
	for _, p := range wellKnownRoots {
		var stx unix.Statx_t
		var st unix.Statfs_t
		if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx) == nil &&
			stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 &&
			unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return "", fmt.Errorf("find cgroup2: %w", err)
	}
	if len(mounts) == 0 {
		return "", fmt.Errorf("%w: /proc/self/mountinfo lists no cgroup2 filesystem; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)", ErrNoCgroup2)
	}
	best, rank := "", -1
	for _, m := range mounts {
		r := 0
		if m.Root == "/" {
			r = 1 + len(wellKnownRoots)
			for i, p := range wellKnownRoots {
				if m.Mountpoint == p {
					r += len(wellKnownRoots) - i
				}
			}
		}
		if r > rank {
			best, rank = m.Mountpoint, r
		}
	}
	return best, nil
}

// beneath is how every path below the hierarchy's root is opened.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openRoot opens the cgroup2 hierarchy's root (O_PATH) and checks that it
// is one.
func openRoot() (int, string, error) {
	root, err := Root()
	if err != nil {
		return -1, "", err
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, root, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, "", fmt.Errorf("open cgroup2 root %s: %w", root, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("statfs %s: %w", root, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		unix.Close(fd)
		return -1, "", fmt.Errorf("%w: %s is listed as cgroup2 but is not (another mount on top of it?)", ErrNoCgroup2, root)
	}
	return fd, root, nil
}

// Group is an open cgroup v2 directory.
type Group struct {
	mu      sync.Mutex
	fd      int // the group's directory
	parent  int // its parent directory (O_PATH), to remove it
	name    string
	path    string
	removed bool
}

// Create makes the cgroup Root()/parent/name and opens it. parent is one
// or more '/'-separated directories below the root ("" for the root
// itself), made with mode 0755 where missing; name is a single component
// that must not exist yet (the error then wraps fs.ErrExist).
func Create(parent, name string) (*Group, error) {
	rootfd, root, err := openRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	return at(rootfd, root, parent, name, true)
}

// Open opens the existing cgroup Root()/parent/name, for example to remove
// one left behind by a process that died. A missing group wraps
// fs.ErrNotExist.
func Open(parent, name string) (*Group, error) {
	rootfd, root, err := openRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	return at(rootfd, root, parent, name, false)
}

// walkParent opens (making what is missing if create) the directory
// parent below rootfd and returns it as an O_PATH fd, with its path.
func walkParent(rootfd int, root, parent string, create bool) (int, string, error) {
	comps, err := splitParent(parent)
	if err != nil {
		return -1, "", err
	}
	dirfd, err := unix.Dup(rootfd)
	if err != nil {
		return -1, "", err
	}
	walked := root
	for _, c := range comps {
		walked = path.Join(walked, c)
		if create {
			if err := unix.Mkdirat(dirfd, c, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(dirfd)
				return -1, "", fmt.Errorf("create cgroup %s: %w", walked, err)
			}
		}
		next, err := openBeneath(dirfd, c, unix.O_PATH)
		unix.Close(dirfd)
		if err != nil {
			return -1, "", fmt.Errorf("open cgroup %s: %w", walked, err)
		}
		dirfd = next
	}
	return dirfd, walked, nil
}

// MakeParent makes (where missing) and opens the cgroup Root()/parent, as
// an O_PATH descriptor: for a process that creates and removes groups
// there by itself (bpfgate's sandbox supervisor does).
func MakeParent(parent string) (*os.File, error) {
	rootfd, root, err := openRoot()
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	fd, p, err := walkParent(rootfd, root, parent, true)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// at walks from rootfd to parent (making what is missing if create) and
// makes (if create) and opens name there.
func at(rootfd int, root, parent, name string, create bool) (*Group, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dirfd, walked, err := walkParent(rootfd, root, parent, create)
	if err != nil {
		return nil, err
	}
	p := path.Join(walked, name)
	if create {
		if err := unix.Mkdirat(dirfd, name, 0o755); err != nil {
			unix.Close(dirfd)
			if err == unix.EEXIST {
				return nil, fmt.Errorf("create cgroup %s: %w: remove it (cgroup.Open, then Remove) or pick another name", p, fs.ErrExist)
			}
			return nil, fmt.Errorf("create cgroup %s: %w", p, err)
		}
	}
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY)
	if err != nil {
		if create {
			unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		}
		unix.Close(dirfd)
		if err == unix.ENOENT {
			err = fs.ErrNotExist
		}
		return nil, fmt.Errorf("open cgroup %s: %w", p, err)
	}
	return &Group{fd: fd, parent: dirfd, name: name, path: p}, nil
}

// openBeneath opens the directory name below dirfd, refusing symlinks,
// mounts and "..".
func openBeneath(dirfd int, name string, flags uint64) (int, error) {
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   flags | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: beneath,
	})
	switch err {
	case unix.ELOOP:
		return -1, fmt.Errorf("%w: it is a symlink", err)
	case unix.EXDEV:
		return -1, fmt.Errorf("%w: another filesystem is mounted there", err)
	case unix.ENOTDIR:
		return -1, fmt.Errorf("%w: not a directory", err)
	}
	return fd, err
}

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("cgroup name %q: want a directory name", name)
	case len(name) > 255:
		return fmt.Errorf("cgroup name %.20q...: longer than 255 bytes", name)
	case strings.ContainsAny(name, "/\x00\n"):
		return fmt.Errorf("cgroup name %q: contains '/', a newline or a NUL byte", name)
	}
	return nil
}

func splitParent(parent string) ([]string, error) {
	if parent == "" {
		return nil, nil
	}
	comps := strings.Split(parent, "/")
	for _, c := range comps {
		if err := checkName(c); err != nil {
			return nil, fmt.Errorf("cgroup parent %q: %w", parent, err)
		}
	}
	return comps, nil
}

// FD is the group's open directory, for SysProcAttr.CgroupFD
// (CLONE_INTO_CGROUP); -1 after Close.
func (g *Group) FD() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fd
}

// Path is where the group was created or opened, for messages and for
// processes that need a path: this package never resolves it again.
func (g *Group) Path() string { return g.path }

// Populated reports whether a process runs in the group or below it
// ("populated" in cgroup.events).
func (g *Group) Populated() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return false, ErrClosed
	}
	fd, err := unix.Openat(g.fd, "cgroup.events", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, fmt.Errorf("cgroup %s: %w", g.path, err)
	}
	defer unix.Close(fd)
	return g.readPopulated(fd)
}

func (g *Group) readPopulated(fd int) (bool, error) {
	buf := make([]byte, 256)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return false, fmt.Errorf("read %s/cgroup.events: %w", g.path, err)
	}
	for line := range bytes.Lines(buf[:n]) {
		k, v, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
		if k == "populated" {
			return v != "0", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated field: %q", g.path, buf[:n])
}

// Kill sends SIGKILL to every process in the group and below it. It does
// not wait for them to exit (Remove does).
func (g *Group) Kill() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return ErrClosed
	}
	return g.kill()
}

func (g *Group) kill() error {
	fd, err := unix.Openat(g.fd, "cgroup.kill", unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err == unix.ENOENT {
		// Linux before 5.14 has no cgroup.kill.
		return g.killEach()
	}
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", g.path, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("1")); err != nil {
		return fmt.Errorf("kill cgroup %s: write cgroup.kill: %w", g.path, err)
	}
	return nil
}

// killEach kills the processes listed in cgroup.procs of the group and its
// descendants, one by one, freezing the group first (Linux 5.2+) so that
// none can fork in between.
func (g *Group) killEach() error {
	frozen := writeAt(g.fd, "cgroup.freeze", "1") == nil
	defer func() {
		if frozen {
			writeAt(g.fd, "cgroup.freeze", "0")
		}
	}()
	for range 50 {
		pids, err := procsBelow(g.fd)
		if err != nil {
			return fmt.Errorf("kill cgroup %s: %w", g.path, err)
		}
		if len(pids) == 0 {
			return nil
		}
		pidfds := map[int]int{}
		for _, pid := range pids {
			if pfd, err := unix.PidfdOpen(pid, 0); err == nil {
				pidfds[pid] = pfd
			}
		}
		// A pidfd is the process that had the pid when it was opened;
		// if that pid is still listed now, it is still that process,
		// so nothing outside the group is ever signalled.
		again, err := procsBelow(g.fd)
		for _, pid := range again {
			if pfd, ok := pidfds[pid]; ok {
				unix.PidfdSendSignal(pfd, unix.SIGKILL, nil, 0)
			}
		}
		for _, pfd := range pidfds {
			unix.Close(pfd)
		}
		if err != nil {
			return fmt.Errorf("kill cgroup %s: %w", g.path, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// procsBelow lists the pids in cgroup.procs of dirfd and its descendants.
func procsBelow(dirfd int) ([]int, error) {
	var pids []int
	err := walk(dirfd, func(fd int) error {
		data, err := readAt(fd, "cgroup.procs")
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
		return nil
	}, nil)
	return pids, err
}

// walk calls pre on dirfd and on every cgroup below it, parents first,
// then post (if not nil) with each child's parent fd and name, children
// first.
func walk(dirfd int, pre func(fd int) error, post func(parentfd int, name string) error) error {
	if err := pre(dirfd); err != nil {
		return err
	}
	ents, err := readDir(dirfd)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		fd, err := openBeneath(dirfd, e.Name(), unix.O_RDONLY)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", e.Name(), err)
		}
		err = walk(fd, pre, post)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s/%w", e.Name(), err)
		}
		if post != nil {
			if err := post(dirfd, e.Name()); err != nil {
				return fmt.Errorf("%s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

func readDir(dirfd int) ([]os.DirEntry, error) {
	// A fresh descriptor reads the directory from its start.
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), ".")
	defer d.Close()
	return d.ReadDir(-1)
}

// maxInterfaceFile caps reads of cgroup interface files (cgroup.procs of a
// group with every possible pid is about 30 MiB).
const maxInterfaceFile = 64 << 20

func readAt(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxInterfaceFile)); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

func writeAt(dirfd int, name, value string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte(value))
	return err
}

// Remove kills everything in the group, waits until no process is left in
// it or below it, and removes its directory and every cgroup below it
// (children first). It fails with ErrBusy if processes remain, or a
// directory stays busy, when timeout has passed. Removing a removed group
// does nothing. The group stays open: Close it.
func (g *Group) Remove(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return ErrClosed
	}
	if g.removed {
		return nil
	}
	// Someone else (bpfgate's sandbox supervisor) may have removed it: its
	// files then fail with ENOENT or EBADF, depending on the kernel.
	var st unix.Stat_t
	if unix.Fstatat(g.parent, g.name, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT {
		g.removed = true
		return nil
	}
	if err := g.kill(); err != nil {
		if unix.Fstatat(g.parent, g.name, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT {
			g.removed = true
			return nil
		}
		return err
	}
	if err := g.waitEmpty(deadline); err != nil {
		return err
	}
	for {
		err := walk(g.fd, func(int) error { return nil }, func(parentfd int, name string) error {
			return rmdir(parentfd, name)
		})
		if err == nil {
			err = rmdir(g.parent, g.name)
		}
		if err == nil {
			g.removed = true
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", g.path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: remove cgroup %s: %w after %v", ErrBusy, g.path, err, timeout)
		}
		// Something made a new process or cgroup in it meanwhile.
		if err := g.kill(); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rmdir(parentfd int, name string) error {
	err := unix.Unlinkat(parentfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// waitEmpty waits until cgroup.events says "populated 0". The kernel
// signals every change of that file with POLLPRI.
func (g *Group) waitEmpty(deadline time.Time) error {
	fd, err := unix.Openat(g.fd, "cgroup.events", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", g.path, err)
	}
	defer unix.Close(fd)
	for {
		// Reading first arms the notification for the next change.
		populated, err := g.readPopulated(fd)
		if err != nil {
			return err
		}
		if !populated {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w: processes still run in cgroup %s (or below it) after SIGKILL; see its cgroup.procs", ErrBusy, g.path)
		}
		ms := int(left.Milliseconds()) + 1
		_, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}, ms)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("wait for cgroup %s: %w", g.path, err)
		}
	}
}

// Close closes the group's directory; the cgroup itself stays. It is safe
// to call twice.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return nil
	}
	err := unix.Close(g.fd)
	if perr := unix.Close(g.parent); err == nil {
		err = perr
	}
	g.fd, g.parent = -1, -1
	return err
}
