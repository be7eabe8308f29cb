package idpool

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The default pool: ids no account and no other container manager is
// documented to use (systemd's UIDS-GIDS.md lists 0x70000000-0x7FFDFFFF as
// unused; 0x7FFE0000-0x7FFEFFFF is its foreign UID range).
const (
	DefaultStart = 0x70000000
	DefaultEnd   = 0x7FFE0000 // exclusive
	DefaultBlock = 65536
	DefaultDir   = "/run/bpfgate/ids"
	// PoolUser is the user whose /etc/subuid and /etc/subgid ranges
	// Default uses when it has some.
	PoolUser = "bpfgate"
)

var (
	// ErrPoolExhausted means every block of the pool is leased.
	ErrPoolExhausted = errors.New("id pool exhausted")
	// ErrInvalidPool means a Pool's fields cannot describe a pool.
	ErrInvalidPool = errors.New("invalid id pool")
	// ErrUnsafeDir means the lease directory could be changed by someone
	// other than its owner, or is reached through a symlink.
	ErrUnsafeDir = errors.New("unsafe lease directory")
)

// Pool is a range of host ids handed out in blocks.
type Pool struct {
	// Start and Size: the pool is the ids Start up to Start+Size-1.
	Start, Size uint32
	// Block is how many ids a lease gets (DefaultBlock if 0). The pool
	// has Size/Block blocks; ids left over at its end are never used.
	Block uint32
	// Dir holds one lock file per block (DefaultDir if ""). Pools that
	// share a Dir never lease overlapping ids, even with different
	// Start or Block.
	Dir string
}

// Default is the host's pool: the ids that /etc/subuid and /etc/subgid
// give to user PoolUser (given by name or uid; if the files differ, the
// largest range they have in common), otherwise DefaultStart up to
// DefaultEnd. A user that has ranges in only one of the files, no range in
// common, fewer ids than a block, or ids of accounts is an error: fix the
// files rather than run workloads with ids someone else may be using.
func Default() (Pool, error) {
	def := Pool{Start: DefaultStart, Size: DefaultEnd - DefaultStart, Block: DefaultBlock, Dir: DefaultDir}
	uid := int64(-1)
	passwd, err := readCapped(passwdFile)
	if err != nil {
		return Pool{}, fmt.Errorf("id pool: %w", err)
	}
	for _, a := range parseAccounts(passwd) {
		if a.name == PoolUser {
			uid = int64(a.id)
			break
		}
	}
	var ranges [2][]Range
	for i, path := range []string{subuidFile, subgidFile} {
		data, err := readCapped(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Pool{}, fmt.Errorf("id pool: %w", err)
		}
		ranges[i] = parseSubIDs(data, PoolUser, uid)
	}
	u, g := ranges[0], ranges[1]
	switch {
	case len(u) == 0 && len(g) == 0:
		return def, nil
	case len(g) == 0:
		return Pool{}, fmt.Errorf("%w: user %s has ids in %s but none in %s: give it both (usermod --add-subuids and --add-subgids) or neither", ErrInvalidPool, PoolUser, subuidFile, subgidFile)
	case len(u) == 0:
		return Pool{}, fmt.Errorf("%w: user %s has ids in %s but none in %s: give it both (usermod --add-subuids and --add-subgids) or neither", ErrInvalidPool, PoolUser, subgidFile, subuidFile)
	}
	r := largestCommon(u, g)
	if r.Size == 0 {
		return Pool{}, fmt.Errorf("%w: the ranges of user %s in %s and %s have no id in common: give it the same range in both", ErrInvalidPool, PoolUser, subuidFile, subgidFile)
	}
	p := Pool{Start: r.Start, Size: r.Size, Block: DefaultBlock, Dir: DefaultDir}
	if _, err := p.normalized(); err != nil {
		return Pool{}, fmt.Errorf("the range of user %s in %s and %s: %w", PoolUser, subuidFile, subgidFile, err)
	}
	for _, k := range []Kind{UID, GID} {
		if err := CheckHostRange(k, p.Start, p.Size); err != nil {
			return Pool{}, fmt.Errorf("the range of user %s in %s and %s: %w", PoolUser, subuidFile, subgidFile, err)
		}
	}
	return p, nil
}

// normalized fills in defaults and checks that the pool makes sense.
func (p Pool) normalized() (Pool, error) {
	if p.Block == 0 {
		p.Block = DefaultBlock
	}
	if p.Dir == "" {
		p.Dir = DefaultDir
	}
	if err := checkRange(p.Start, p.Size); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalidPool, err)
	}
	if p.Start < FirstRegularID {
		return p, fmt.Errorf("%w: it starts at %d, below %d: system ids are never handed out", ErrInvalidPool, p.Start, FirstRegularID)
	}
	if p.Size < p.Block {
		return p, fmt.Errorf("%w: %d ids, fewer than one block of %d", ErrInvalidPool, p.Size, p.Block)
	}
	return p, nil
}

// startBlock picks the block a scan starts at, so that concurrent callers
// do not all contend for the first block. Tests replace it.
var startBlock = func(n uint32) uint32 { return rand.Uint32N(n) }

// Acquire leases a block of the pool that no live lease holds, or fails
// with ErrPoolExhausted. The lease lasts until Release, or until every
// process holding its file (Lease.File) has closed it or exited.
func (p Pool) Acquire() (*Lease, error) {
	p, err := p.normalized()
	if err != nil {
		return nil, err
	}
	dir, err := openDir(p.Dir, true)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	n := p.Size / p.Block
	first := startBlock(n) % n
	for i := range n {
		base := p.Start + (first+i)%n*p.Block
		l, err := tryLock(dir, base, p.Block)
		if err != nil {
			return nil, fmt.Errorf("id pool %s: %w", p.Dir, err)
		}
		if l == nil {
			continue
		}
		// A lease of another geometry (another Block or Start) may
		// hold some of these ids. Checking after taking our own lock
		// means of two such racing callers at least one sees the other.
		busy, err := overlapHeld(dir, base, p.Block)
		if err != nil || busy {
			l.Release()
			if err != nil {
				return nil, fmt.Errorf("id pool %s: %w", p.Dir, err)
			}
			continue
		}
		// The note is for people only; a failure to write it changes nothing.
		l.SetOwner(os.Getpid())
		return l, nil
	}
	return nil, fmt.Errorf("%w: all %d blocks of %d ids in %d-%d are leased (locks in %s); wait for a workload to end or enlarge the pool",
		ErrPoolExhausted, n, p.Block, p.Start, uint64(p.Start)+uint64(p.Size)-1, p.Dir)
}

// Held is a block some process holds, as Leases reports it.
type Held struct {
	Base, Size uint32
	// Pid and Since are what the holder wrote (0 and zero if unreadable):
	// for people, never to act on. The pid may be gone or reused.
	Pid   int
	Since time.Time
}

// Leases reports the blocks of Dir (all pools sharing it) held right now.
// Probing takes each free block's lock for an instant: a concurrent Acquire
// may skip that block and take another.
func (p Pool) Leases() ([]Held, error) {
	if p.Dir == "" {
		p.Dir = DefaultDir
	}
	dir, err := openDir(p.Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := lockNames(dir)
	if err != nil {
		return nil, err
	}
	var out []Held
	for _, n := range names {
		f, held, err := probe(dir, n.file)
		if err != nil {
			return nil, fmt.Errorf("id pool %s: %w", p.Dir, err)
		}
		if f == nil {
			continue
		}
		if held {
			h := Held{Base: n.base, Size: n.size}
			h.Pid, h.Since = readNote(f)
			out = append(out, h)
		}
		f.Close()
	}
	return out, nil
}

// Lease is a block of host ids held through a locked file.
type Lease struct {
	base, size uint32
	mu         sync.Mutex
	f          *os.File
	dir        *os.File // the pool's directory, to remove the file on Release
}

// Base is the first host id of the lease.
func (l *Lease) Base() uint32 { return l.base }

// Size is how many ids the lease has.
func (l *Lease) Size() uint32 { return l.size }

// File is the locked file that holds the lease (nil after Release or
// Close). It is close-on-exec: pass it explicitly (exec.Cmd.ExtraFiles) to
// a process that must keep the lease alive, never to the workload.
func (l *Lease) File() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// IDMap maps ids 0 up to Size-1 of a user namespace onto the lease.
func (l *Lease) IDMap() []syscall.SysProcIDMap {
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(l.base), Size: int(l.size)}}
}

// SetOwner records pid and the time in the lock file, for people listing
// leases (Pool.Leases). Acquire records its own pid; record the process
// that now keeps the lease, once it has the file.
func (l *Lease) SetOwner(pid int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("lease %d-%d: %w", l.base, uint64(l.base)+uint64(l.size)-1, os.ErrClosed)
	}
	note := fmt.Sprintf("pid %d\nsince %s\nids %d-%d\n", pid, time.Now().UTC().Format(time.RFC3339),
		l.base, uint64(l.base)+uint64(l.size)-1)
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(note), 0)
	return err
}

// Release ends the lease for every process: it unlocks the file, which also
// drops the lock for processes that inherited it, and closes this copy.
// Call it when nothing runs with the ids any more. It is safe to call twice.
func (l *Lease) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	// The file goes while the lock is still held, so that the pool's
	// directory keeps one file per live lease; tryLock makes sure a
	// racing Acquire that still opened it does not take it for a lease.
	if l.dir != nil {
		_ = unix.Unlinkat(int(l.dir.Fd()), lockName(l.base, l.size), 0)
		l.dir.Close()
		l.dir = nil
	}
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// Close closes this process's copy of the lease file and leaves the lease
// to the processes that inherited the file; with none, the lease ends. It
// is safe to call twice, and after Release.
func (l *Lease) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	if l.dir != nil {
		l.dir.Close()
		l.dir = nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// openDir opens the lease directory without following any symlink, making
// it (mode 0700, parents 0755) if create is set, and refuses it unless it
// is a directory owned by us that nobody else may write to.
func openDir(path string, create bool) (*os.File, error) {
	if create {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("id pool: %w", err)
		}
		if err := unix.Mkdir(path, 0o700); err != nil && err != unix.EEXIST {
			return nil, fmt.Errorf("id pool: mkdir %s: %w", path, err)
		}
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case err == unix.ELOOP:
		return nil, fmt.Errorf("%w: %s is, or is reached through, a symlink: use a path without symlinks", ErrUnsafeDir, path)
	case err == unix.ENOTDIR:
		return nil, fmt.Errorf("%w: %s is not a directory", ErrUnsafeDir, path)
	case err != nil:
		return nil, fmt.Errorf("id pool: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("id pool: stat %s: %w", path, err)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %s is owned by uid %d, not by uid %d: remove it, bpfgate recreates it", ErrUnsafeDir, path, st.Uid, euid)
	}
	if st.Mode&0o022 != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %s has mode %#o, writable by others: chmod 0700 %s", ErrUnsafeDir, path, st.Mode&0o7777, path)
	}
	return os.NewFile(uintptr(fd), path), nil
}

func lockName(base, size uint32) string { return fmt.Sprintf("%d-%d", base, size) }

// tryLock opens (creating) the lock file of a block and takes its lock. It
// returns nil, nil when a live lease holds it.
func tryLock(dir *os.File, base, size uint32) (*Lease, error) {
	name := lockName(base, size)
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name))
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, err
	}
	switch err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		// The holder that released it may have removed the name after we
		// opened it: a lock on a file no longer in the directory is no lease.
		var mine, named unix.Stat_t
		if unix.Fstat(fd, &mine) != nil || unix.Fstatat(int(dir.Fd()), name, &named, unix.AT_SYMLINK_NOFOLLOW) != nil ||
			mine.Ino != named.Ino || mine.Dev != named.Dev {
			f.Close()
			return nil, nil
		}
		keep, err := unix.FcntlInt(dir.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		return &Lease{base: base, size: size, f: f, dir: os.NewFile(uintptr(keep), dir.Name())}, nil
	case unix.EWOULDBLOCK:
		f.Close()
		return nil, nil
	default:
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
}

func checkRegular(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("lock file %s is not a regular file (%v): remove it", f.Name(), fi.Mode().Type())
	}
	return nil
}

type lockFile struct {
	file       string
	base, size uint32
}

// lockNames lists the lock files in dir; other names are ignored.
func lockNames(dir *os.File) ([]lockFile, error) {
	// A fresh descriptor reads the directory from its start every time.
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir.Name(), err)
	}
	d := os.NewFile(uintptr(fd), dir.Name())
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir.Name(), err)
	}
	var out []lockFile
	for _, n := range names {
		b, s, ok := strings.Cut(n, "-")
		if !ok {
			continue
		}
		base, err1 := strconv.ParseUint(b, 10, 32)
		size, err2 := strconv.ParseUint(s, 10, 32)
		if err1 != nil || err2 != nil || size == 0 || lockName(uint32(base), uint32(size)) != n {
			continue
		}
		out = append(out, lockFile{file: n, base: uint32(base), size: uint32(size)})
	}
	return out, nil
}

// overlapHeld reports whether a live lease of another geometry holds any of
// the ids base..base+size-1.
func overlapHeld(dir *os.File, base, size uint32) (bool, error) {
	names, err := lockNames(dir)
	if err != nil {
		return false, err
	}
	want := Range{Start: base, Size: size}
	for _, n := range names {
		other := Range{Start: n.base, Size: n.size}
		if other == want || want.intersect(other).Size == 0 {
			continue
		}
		f, held, err := probe(dir, n.file)
		if err != nil {
			return false, err
		}
		if f != nil {
			f.Close()
		}
		if held {
			return true, nil
		}
	}
	return false, nil
}

// probe opens an existing lock file and reports whether a lease holds it.
// It returns a nil file if the file is gone.
func probe(dir *os.File, name string) (*os.File, bool, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.ENOENT {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open lock file %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name))
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, false, err
	}
	switch err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		unix.Flock(fd, unix.LOCK_UN)
		return f, false, nil
	case unix.EWOULDBLOCK:
		return f, true, nil
	default:
		f.Close()
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
}

// readNote reads what SetOwner wrote, tolerating anything else.
func readNote(f *os.File) (pid int, since time.Time) {
	buf := make([]byte, 512)
	n, _ := f.ReadAt(buf, 0)
	for line := range bytes.Lines(buf[:n]) {
		k, v, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
		switch k {
		case "pid":
			if p, err := strconv.Atoi(v); err == nil && p > 0 {
				pid = p
			}
		case "since":
			if t, err := time.Parse(time.RFC3339, v); err == nil {
				since = t
			}
		}
	}
	return pid, since
}
