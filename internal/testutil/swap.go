package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Nobody is the uid and gid the attack tests run their unprivileged side as.
const Nobody = 65534

// SymlinkLab is a directory tree an unprivileged user owns, with a bpffs
// mounted below it: Dir/d/bpf. The user can rename Dir/d, so Dir/d can be
// swapped for a symlink while root works on Dir/d/bpf.
type SymlinkLab struct {
	// Dir is owned by Nobody; Dir/d is the directory that gets swapped.
	Dir string
	// BPFFS is Dir/d/bpf, the bpffs root's operations should stay on.
	BPFFS string
	// Root is an O_PATH fd of the bpffs root: the test's own way in,
	// whatever the swapper did to the path.
	Root int
}

// At is the path of name inside the lab's bpffs through the test's own fd,
// immune to the swapping.
func (l *SymlinkLab) At(name string) string {
	return filepath.Join("/proc/self/fd", strconv.Itoa(l.Root), name)
}

// NewSymlinkLab builds the lab in a fresh directory and removes it after
// the test. base is where it goes (a public directory).
func NewSymlinkLab(tb testing.TB, base string) *SymlinkLab {
	tb.Helper()
	l := &SymlinkLab{Dir: filepath.Join(base, "user")}
	l.BPFFS = filepath.Join(l.Dir, "d", "bpf")
	if err := os.MkdirAll(l.BPFFS, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{l.Dir, filepath.Join(l.Dir, "d")} {
		if err := os.Chown(p, Nobody, Nobody); err != nil {
			tb.Fatal(err)
		}
	}
	if err := unix.Mount("bpf", l.BPFFS, "bpf", 0, ""); err != nil {
		tb.Fatalf("mount bpffs on %s: %v", l.BPFFS, err)
	}
	fd, err := unix.Open(l.BPFFS, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Unmount(l.BPFFS, unix.MNT_DETACH)
		tb.Fatal(err)
	}
	l.Root = fd
	tb.Cleanup(func() {
		// By fd: the swapper may have left the mount under another name.
		if err := unix.Unmount(l.At(""), unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", l.BPFFS, err)
		}
		unix.Close(fd)
	})
	return l
}

// Symlink creates a symlink named name in the lab's directory, owned by
// Nobody, pointing to target.
func (l *SymlinkLab) Symlink(tb testing.TB, name, target string) string {
	tb.Helper()
	p := filepath.Join(l.Dir, name)
	if err := os.Symlink(target, p); err != nil {
		tb.Fatal(err)
	}
	if err := os.Lchown(p, Nobody, Nobody); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Swap starts the attacker: a goroutine on an OS thread of its own whose
// credentials are Nobody's (no capabilities, no groups), which exchanges
// Dir/d with each of the named entries of Dir in turn, in a tight loop,
// with renameat2(RENAME_EXCHANGE). stop ends the loop, puts the real
// directory back at Dir/d and returns how many swaps were made.
func (l *SymlinkLab) Swap(tb testing.TB, names ...string) (stop func() int) {
	tb.Helper()
	var (
		done  atomic.Bool
		swaps atomic.Int64
		wg    sync.WaitGroup
		ready = make(chan error, 1)
	)
	d := filepath.Join(l.Dir, "d")
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := DropToNobody(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for !done.Load() {
			for _, n := range names {
				other := filepath.Join(l.Dir, n)
				if unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, other, unix.RENAME_EXCHANGE) == nil {
					swaps.Add(1)
					unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, other, unix.RENAME_EXCHANGE)
				}
			}
		}
	}()
	if err := <-ready; err != nil {
		tb.Fatalf("drop to uid %d on the swapper's thread: %v", Nobody, err)
	}
	var once sync.Once
	stop = func() int {
		once.Do(func() {
			done.Store(true)
			wg.Wait()
		})
		return int(swaps.Load())
	}
	tb.Cleanup(func() { stop() })
	return stop
}

// PinClone pins a clone of m at path, making the directories above it; a
// pin already there is fine.
func PinClone(tb testing.TB, m *ebpf.Map, path string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	c, err := m.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Pin(path); err != nil && !errors.Is(err, os.ErrExist) {
		tb.Fatalf("pin %s: %v", path, err)
	}
}

// DropToNobody makes the calling goroutine's OS thread Nobody's (no
// capabilities, no groups) for good: the thread stays locked, so it dies
// with the goroutine instead of going back to the runtime with a foreign
// uid. The raw calls change this thread only, where the unix package's
// change every thread. Call it on a goroutine of its own.
func DropToNobody() error {
	runtime.LockOSThread()
	for _, c := range [][4]uintptr{
		{unix.SYS_SETGROUPS, 0, 0, 0},
		{unix.SYS_SETRESGID, Nobody, Nobody, Nobody},
		{unix.SYS_SETRESUID, Nobody, Nobody, Nobody},
	} {
		if _, _, e := unix.RawSyscall(c[0], c[1], c[2], c[3]); e != 0 {
			return e
		}
	}
	// Proof that the thread is unprivileged: root could write here.
	if err := unix.Access("/etc/shadow", unix.W_OK); err == nil {
		return os.ErrPermission
	}
	return nil
}
