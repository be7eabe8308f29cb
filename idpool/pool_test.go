package idpool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// The test binary doubles as a process that acquires a lease and holds it
// until its standard input closes.
func TestMain(m *testing.M) {
	if spec := os.Getenv("IDPOOL_TEST_ACQUIRE"); spec != "" {
		os.Exit(helperAcquire(spec))
	}
	os.Exit(m.Run())
}

func helperAcquire(spec string) int {
	var p Pool
	if _, err := fmt.Sscanf(spec, "%d:%d:%d:%s", &p.Start, &p.Size, &p.Block, &p.Dir); err != nil {
		fmt.Println("error", err)
		return 2
	}
	l, err := p.Acquire()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println(l.Base())
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// holder is another process holding a lease of p.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	base  uint32
}

func startHolder(t *testing.T, p Pool) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("IDPOOL_TEST_ACQUIRE=%d:%d:%d:%s", p.Start, p.Size, p.Block, p.Dir))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { h.stop() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	base, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
	if err != nil {
		t.Fatalf("holder said %q", line)
	}
	h.base = uint32(base)
	return h
}

// stop kills the holder: a race-enabled binary would sleep a second at exit.
func (h *holder) stop() {
	if h.cmd.ProcessState == nil {
		h.cmd.Process.Kill()
		h.cmd.Wait()
	}
}

func testPool(t *testing.T, blocks, block uint32) Pool {
	t.Helper()
	return Pool{Start: 0x70000000, Size: blocks * block, Block: block, Dir: filepath.Join(t.TempDir(), "ids")}
}

func mustAcquire(t *testing.T, p Pool) *Lease {
	t.Helper()
	l, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release() })
	return l
}

func wantExhausted(t *testing.T, p Pool) {
	t.Helper()
	l, err := p.Acquire()
	if err == nil {
		l.Release()
		t.Fatalf("Acquire got %d-%d from a pool that should be full", l.Base(), l.Base()+l.Size()-1)
	}
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Acquire: %v, want ErrPoolExhausted", err)
	}
}

// checkDisjoint fails unless the leases lie in p, on block boundaries, and
// share no id.
func checkDisjoint(t *testing.T, p Pool, ls []*Lease) {
	t.Helper()
	var rs []Range
	for _, l := range ls {
		rs = append(rs, Range{l.Base(), l.Size()})
	}
	checkRanges(t, p, rs)
}

func checkRanges(t *testing.T, p Pool, rs []Range) {
	t.Helper()
	for i, a := range rs {
		if a.Start < p.Start || a.end() > uint64(p.Start)+uint64(p.Size) || a.Size == 0 {
			t.Errorf("lease %d-%d is not inside the pool %d-%d", a.Start, a.end()-1, p.Start, uint64(p.Start)+uint64(p.Size)-1)
		}
		for _, b := range rs[:i] {
			if a.intersect(b).Size != 0 {
				t.Errorf("leases %d-%d and %d-%d overlap", a.Start, a.end()-1, b.Start, b.end()-1)
			}
		}
	}
}

func TestAcquireDisjointUntilExhausted(t *testing.T) {
	p := testPool(t, 8, 1000)
	var ls []*Lease
	for range 8 {
		l := mustAcquire(t, p)
		if l.Size() != 1000 || (l.Base()-p.Start)%1000 != 0 {
			t.Errorf("lease %d+%d is not a block of the pool", l.Base(), l.Size())
		}
		ls = append(ls, l)
	}
	checkDisjoint(t, p, ls)
	wantExhausted(t, p)

	freed := ls[3].Base()
	if err := ls[3].Release(); err != nil {
		t.Fatal(err)
	}
	if err := ls[3].Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if l := mustAcquire(t, p); l.Base() != freed {
		t.Errorf("after releasing %d, Acquire got %d", freed, l.Base())
	}
	wantExhausted(t, p)
}

func TestAcquireStartsAtStartBlock(t *testing.T) {
	defer func(f func(uint32) uint32) { startBlock = f }(startBlock)
	startBlock = func(n uint32) uint32 { return n - 1 }
	p := testPool(t, 4, 10)
	for _, want := range []uint32{30, 0, 10, 20} {
		if l := mustAcquire(t, p); l.Base() != p.Start+want {
			t.Errorf("Acquire got %d, want %d (scan from the last block, wrapping)", l.Base()-p.Start, want)
		}
	}
}

func TestAcquireConcurrentGoroutines(t *testing.T) {
	const n = 20
	p := testPool(t, n, 65536)
	leases := make([]*Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			leases[i], errs[i] = p.Acquire()
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("goroutine %d: %v", i, err)
		}
		t.Cleanup(func() { leases[i].Release() })
	}
	checkDisjoint(t, p, leases)
	wantExhausted(t, p)
}

func TestAcquireConcurrentProcesses(t *testing.T) {
	const n = 20
	p := testPool(t, n, 65536)
	hs := make([]*holder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { hs[i] = startHolder(t, p) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var rs []Range
	for _, h := range hs {
		rs = append(rs, Range{h.base, p.Block})
	}
	checkRanges(t, p, rs)
	wantExhausted(t, p)
}

// A holder killed with SIGKILL cannot release anything: the kernel does.
func TestKilledHolderFreesBlock(t *testing.T) {
	p := testPool(t, 1, 65536)
	h := startHolder(t, p)
	wantExhausted(t, p)
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()
	if l := mustAcquire(t, p); l.Base() != h.base {
		t.Errorf("got %d, want the killed holder's block %d", l.Base(), h.base)
	}
}

func TestInheritedFileKeepsLease(t *testing.T) {
	p := testPool(t, 1, 65536)
	l := mustAcquire(t, p)
	child := exec.Command("sleep", "1000")
	child.ExtraFiles = []*os.File{l.File()}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.File() != nil {
		t.Error("File() after Close is not nil")
	}
	wantExhausted(t, p)

	child.Process.Kill()
	child.Wait()
	mustAcquire(t, p)
}

// Release unlocks the shared lock: it ends the lease in children too.
func TestReleaseEndsInheritedLease(t *testing.T) {
	p := testPool(t, 1, 65536)
	l := mustAcquire(t, p)
	child := exec.Command("sleep", "1000")
	child.ExtraFiles = []*os.File{l.File()}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, p)
}

// Pools of different geometry sharing a directory never overlap.
func TestMixedBlockSizes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ids")
	small := Pool{Start: 0x70000000, Size: 4 * 1000, Block: 1000, Dir: dir}
	big := Pool{Start: 0x70000000, Size: 4 * 1000, Block: 2000, Dir: dir}
	shifted := Pool{Start: 0x70000000 + 500, Size: 3 * 1000, Block: 1000, Dir: dir}

	b1 := mustAcquire(t, big)
	b2 := mustAcquire(t, big)
	wantExhausted(t, small)
	wantExhausted(t, shifted)

	b1.Release()
	var live []Range
	live = append(live, Range{b2.Base(), b2.Size()})
	for range 2 {
		l := mustAcquire(t, small)
		live = append(live, Range{l.Base(), l.Size()})
	}
	wantExhausted(t, small)
	wantExhausted(t, shifted)
	wantExhausted(t, big)
	checkRanges(t, Pool{Start: 0x70000000, Size: 4000}, live)
}

func TestLeasesList(t *testing.T) {
	p := testPool(t, 4, 1000)
	a := mustAcquire(t, p)
	b := mustAcquire(t, p)
	c := mustAcquire(t, p)
	c.Release()
	if err := b.SetOwner(4242); err != nil {
		t.Fatal(err)
	}
	held, err := p.Leases()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(held, func(x, y Held) int { return int(x.Base) - int(y.Base) })
	want := map[uint32]int{a.Base(): os.Getpid(), b.Base(): 4242}
	if len(held) != len(want) {
		t.Fatalf("Leases = %+v, want %v", held, want)
	}
	for _, h := range held {
		if pid, ok := want[h.Base]; !ok || h.Pid != pid || h.Size != 1000 {
			t.Errorf("Leases has %+v, want pid %d (ok %v)", h, pid, ok)
		}
		if time.Since(h.Since) > time.Minute {
			t.Errorf("lease %d since %v", h.Base, h.Since)
		}
	}
}

func TestLockDirRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, tmp string) string // returns Dir
		root bool
	}{
		{"symlink", func(t *testing.T, tmp string) string {
			mkdir(t, tmp+"/real", 0o700)
			symlink(t, "real", tmp+"/ids")
			return tmp + "/ids"
		}, false},
		{"symlink to a missing dir", func(t *testing.T, tmp string) string {
			symlink(t, "elsewhere", tmp+"/ids")
			return tmp + "/ids"
		}, false},
		{"symlinked parent", func(t *testing.T, tmp string) string {
			mkdir(t, tmp+"/real", 0o755)
			mkdir(t, tmp+"/real/ids", 0o700)
			symlink(t, "real", tmp+"/run")
			return tmp + "/run/ids"
		}, false},
		{"writable by others", func(t *testing.T, tmp string) string {
			mkdir(t, tmp+"/ids", 0o700)
			if err := os.Chmod(tmp+"/ids", 0o777); err != nil {
				t.Fatal(err)
			}
			return tmp + "/ids"
		}, false},
		{"a file", func(t *testing.T, tmp string) string {
			if err := os.WriteFile(tmp+"/ids", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return tmp + "/ids"
		}, false},
		{"owned by someone else", func(t *testing.T, tmp string) string {
			mkdir(t, tmp+"/ids", 0o700)
			if err := os.Chown(tmp+"/ids", 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return tmp + "/ids"
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.RequireRoot(t) // to chown
			}
			tmp := t.TempDir()
			dir := tc.make(t, tmp)
			before := tree(t, tmp)
			l, err := Pool{Start: 0x70000000, Size: 65536, Dir: dir}.Acquire()
			if err == nil {
				l.Release()
				t.Fatalf("Acquire with Dir %s succeeded", dir)
			}
			if !errors.Is(err, ErrUnsafeDir) {
				t.Errorf("Acquire: %v, want ErrUnsafeDir", err)
			}
			if after := tree(t, tmp); !slices.Equal(before, after) {
				t.Errorf("Acquire changed %s: %v, then %v", tmp, before, after)
			}
		})
	}
}

// A symlink planted as a lock file is not followed.
func TestLockFileSymlinkRefused(t *testing.T) {
	p := testPool(t, 1, 65536)
	mkdir(t, p.Dir, 0o700)
	target := filepath.Join(filepath.Dir(p.Dir), "target")
	symlink(t, target, filepath.Join(p.Dir, lockName(p.Start, p.Block)))
	if l, err := p.Acquire(); err == nil {
		l.Release()
		t.Fatal("Acquire followed a symlinked lock file")
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("Acquire created the symlink's target")
	}
}

func TestInvalidPool(t *testing.T) {
	for _, p := range []Pool{
		{Start: 0x70000000, Size: 0},
		{Start: 0x70000000, Size: 1000, Block: 1001},
		{Start: 0, Size: 1 << 20},
		{Start: 999, Size: 1 << 20},
		{Start: 0xFFFF0000, Size: 0x10000},
	} {
		p.Dir = filepath.Join(t.TempDir(), "ids")
		if l, err := p.Acquire(); !errors.Is(err, ErrInvalidPool) {
			if l != nil {
				l.Release()
			}
			t.Errorf("%+v: Acquire: %v, want ErrInvalidPool", p, err)
		}
	}
}

func TestIDMap(t *testing.T) {
	l := mustAcquire(t, testPool(t, 1, 65536))
	want := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0x70000000, Size: 65536}}
	if got := l.IDMap(); !slices.Equal(got, want) {
		t.Errorf("IDMap = %v, want %v", got, want)
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// tree lists every path below root with its mode.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v", path, fi.Mode()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
