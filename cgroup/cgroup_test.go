package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

var seq atomic.Int32

// testParent is a parent cgroup name of this test alone; it and anything
// left below it are removed after the test.
func testParent(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	parent := fmt.Sprintf("bpfgate-test-%d-%d", os.Getpid(), seq.Add(1))
	t.Cleanup(func() {
		root, err := Root()
		if err != nil {
			return
		}
		dir := filepath.Join(root, parent)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			if g, err := Open(parent, e.Name()); err == nil {
				if err := g.Remove(5 * time.Second); err != nil {
					t.Errorf("cleanup: %v", err)
				}
				g.Close()
			}
		}
		if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return parent
}

func create(t *testing.T, parent, name string) *Group {
	t.Helper()
	g, err := Create(parent, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// startIn starts a command in g, from its first instruction.
func startIn(t *testing.T, g *Group, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// pidfds opens a pidfd for every process in g and below.
func pidfds(t *testing.T, g *Group) []int {
	t.Helper()
	pids, err := procsBelow(g.FD())
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open %d: %v", pid, err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		fds = append(fds, fd)
	}
	return fds
}

// waitProcs waits until g and its descendants hold n processes.
func waitProcs(t *testing.T, g *Group, n int) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(5 * time.Millisecond) {
		pids, err := procsBelow(g.FD())
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == n {
			return
		}
	}
	t.Fatalf("cgroup %s never held %d processes", g.Path(), n)
}

func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 0)
	return n == 1
}

func gone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", path, err)
	}
}

func TestRoot(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("Root() = %s, a filesystem of type %#x, not cgroup2", root, st.Type)
	}
	want := "/sys/fs/cgroup/unified" // hybrid
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		want = "/sys/fs/cgroup" // unified
	}
	if root != want {
		t.Errorf("Root() = %s, want %s", root, want)
	}
}

func TestCreateRunRemove(t *testing.T) {
	parent := testParent(t)
	g := create(t, parent, "w")
	if got, want := g.Path(), filepath.Join(must(Root()), parent, "w"); got != want {
		t.Errorf("Path() = %s, want %s", got, want)
	}
	if p, err := g.Populated(); err != nil || p {
		t.Errorf("new group: Populated() = %v, %v", p, err)
	}
	cmd := startIn(t, g, nil, "sleep", "100")
	if got, want := testutil.CgroupOf(t, strconv.Itoa(cmd.Process.Pid)), "/"+parent+"/w"; got != want {
		t.Errorf("process is in %s, want %s", got, want)
	}
	if p, err := g.Populated(); err != nil || !p {
		t.Errorf("running group: Populated() = %v, %v", p, err)
	}
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("sleep ended with %v, want SIGKILL", err)
	}
	gone(t, g.Path())
	if err := g.Remove(time.Second); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := g.Populated(); err == nil {
		t.Error("Populated() of a removed group did not fail")
	}
	if err := g.Close(); err != nil {
		t.Error(err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if g.FD() != -1 {
		t.Error("FD() after Close is not -1")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Children and grandchildren that the workload forks die with it.
func TestRemoveKillsForkedProcesses(t *testing.T) {
	g := create(t, testParent(t), "w")
	startIn(t, g, nil, "sh", "-c", "sleep 100 & (sleep 100 & sleep 100; true) & wait")
	waitProcs(t, g, 5) // sh, sleep, subshell, its two sleeps
	fds := pidfds(t, g)
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i, fd := range fds {
		if !exited(fd) {
			t.Errorf("process %d of %d still runs", i, len(fds))
		}
	}
	gone(t, g.Path())
}

// Cgroups the workload makes below its own go with it.
func TestRemoveSubCgroups(t *testing.T) {
	g := create(t, testParent(t), "w")
	script := `mkdir "$CG/sub" "$CG/sub/deeper" "$CG/empty" || exit 1
sleep 100 & echo $! > "$CG/sub/deeper/cgroup.procs" || exit 1
exec sleep 100`
	cmd := startIn(t, g, []string{"CG=" + g.Path()}, "sh", "-c", script)
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		data, _ := os.ReadFile(g.Path() + "/sub/deeper/cgroup.procs")
		if len(strings.TrimSpace(string(data))) > 0 {
			break
		}
		if cmd.ProcessState != nil || time.Since(start) > 10*time.Second {
			t.Fatal("the workload did not move a process into sub/deeper")
		}
	}
	fds := pidfds(t, g)
	if len(fds) != 2 {
		t.Fatalf("%d processes in the group, want 2", len(fds))
	}
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if !exited(fd) {
			t.Error("a process still runs")
		}
	}
	gone(t, g.Path())
}

// A process that SIGKILL cannot end (frozen by the cgroup v1 freezer) makes
// Remove time out with ErrBusy, within the time given.
func TestRemoveTimeout(t *testing.T) {
	parent := testParent(t)
	var st unix.Statfs_t
	freezer := "/sys/fs/cgroup/freezer"
	if unix.Statfs(freezer, &st) != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
		testutil.Skip(t, "needs the cgroup v1 freezer at "+freezer+" to make a process SIGKILL cannot end")
	}
	fz := filepath.Join(freezer, parent)
	if err := os.Mkdir(fz, 0o755); err != nil {
		t.Fatal(err)
	}
	thaw := func() {
		if err := os.WriteFile(fz+"/freezer.state", []byte("THAWED"), 0); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() {
		thaw()
		for start := time.Now(); os.Remove(fz) != nil && time.Since(start) < 5*time.Second; {
			time.Sleep(10 * time.Millisecond)
		}
	})

	g := create(t, parent, "w")
	cmd := startIn(t, g, nil, "sleep", "100")
	if err := os.WriteFile(fz+"/cgroup.procs", []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fz+"/freezer.state", []byte("FROZEN"), 0); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		data, _ := os.ReadFile(fz + "/freezer.state")
		if strings.TrimSpace(string(data)) == "FROZEN" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("freezer.state: %q", data)
		}
	}

	start := time.Now()
	err := g.Remove(300 * time.Millisecond)
	took := time.Since(start)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove of a group with a frozen process: %v, want ErrBusy", err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("Remove(300ms) returned after %v", took)
	}
	if _, err := os.Stat(g.Path()); err != nil {
		t.Errorf("busy group: %v", err)
	}

	thaw() // the pending SIGKILL now ends it
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	gone(t, g.Path())
}

func TestCreateExisting(t *testing.T) {
	parent := testParent(t)
	g := create(t, parent, "w")
	if _, err := Create(parent, "w"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create of an existing group: %v, want fs.ErrExist", err)
	}
	o, err := Open(parent, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Path() != g.Path() {
		t.Errorf("Open: %s, Create: %s", o.Path(), g.Path())
	}
	if _, err := Open(parent, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing group: %v, want fs.ErrNotExist", err)
	}
	if _, err := Open(parent+"-missing", "w"); err == nil {
		t.Error("Open below a missing parent succeeded")
	}
}

func TestBadNames(t *testing.T) {
	parent := testParent(t)
	for _, tc := range []struct{ parent, name string }{
		{parent, ""},
		{parent, "."},
		{parent, ".."},
		{parent, "a/b"},
		{parent, "a\nb"},
		{parent, strings.Repeat("x", 256)},
		{parent + "/", "w"},
		{"/" + parent, "w"},
		{parent + "//x", "w"},
		{parent + "/..", "w"},
		{"../" + parent, "w"},
	} {
		if g, err := Create(tc.parent, tc.name); err == nil {
			g.Remove(time.Second)
			g.Close()
			t.Errorf("Create(%q, %q) succeeded", tc.parent, tc.name)
		}
	}
	if _, err := os.Stat(filepath.Join(must(Root()), parent)); err == nil {
		t.Errorf("a refused Create made %s", parent)
	}
}

// cgroupfs has no symlinks, but the walk must refuse one anywhere: it is
// tested on an ordinary directory tree.
func TestSymlinkedParentRefused(t *testing.T) {
	tmp := t.TempDir()
	if err := os.Mkdir(tmp+"/root", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp+"/elsewhere", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../elsewhere", tmp+"/root/bpfgate"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp+"/root/real", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tmp+"/elsewhere", tmp+"/root/real/up"); err != nil {
		t.Fatal(err)
	}
	rootfd, err := unix.Open(tmp+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootfd)
	for _, tc := range []struct {
		parent, name string
		create       bool
	}{
		{"bpfgate", "w", true},
		{"bpfgate", "w", false},
		{"", "bpfgate", false},
		{"real/up", "w", true},
		{"real", "up", false},
	} {
		g, err := at(rootfd, tmp+"/root", tc.parent, tc.name, tc.create)
		if err == nil {
			g.Close()
			t.Errorf("at(%q, %q, create %v) followed a symlink", tc.parent, tc.name, tc.create)
		} else if !errors.Is(err, unix.ELOOP) {
			t.Errorf("at(%q, %q, create %v): %v, want ELOOP", tc.parent, tc.name, tc.create, err)
		}
	}
	if ents, _ := os.ReadDir(tmp + "/elsewhere"); len(ents) != 0 {
		t.Errorf("the symlinks' target got %v", ents)
	}
}

// bindMount mounts a fresh directory on target for the rest of the test.
func bindMount(t *testing.T, target string) string {
	t.Helper()
	src := t.TempDir()
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount on %s: %v", target, err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	return src
}

// A mount planted at the parent is not entered.
func TestMountedParentRefused(t *testing.T) {
	parent := testParent(t)
	dir := filepath.Join(must(Root()), parent)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := bindMount(t, dir)
	if g, err := Create(parent, "w"); err == nil {
		g.Close()
		t.Fatal("Create went through a mount planted at the parent")
	} else if !errors.Is(err, unix.EXDEV) {
		t.Errorf("Create: %v, want EXDEV", err)
	}
	if ents, _ := os.ReadDir(src); len(ents) != 0 {
		t.Errorf("the planted mount got %v", ents)
	}
}

// Remove never descends into a mount planted below the group, and leaves
// what is there alone.
func TestRemoveRefusesMountBelow(t *testing.T) {
	g := create(t, testParent(t), "w")
	if err := os.Mkdir(g.Path()+"/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	src := bindMount(t, g.Path()+"/sub")
	if err := os.Mkdir(src+"/victim", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(time.Second); err == nil {
		t.Fatal("Remove succeeded with a mount below the group")
	}
	if _, err := os.Stat(src + "/victim"); err != nil {
		t.Errorf("Remove touched the mount: %v", err)
	}
	if err := unix.Unmount(g.Path()+"/sub", unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	gone(t, g.Path())
}

// The fallback for kernels without cgroup.kill (before 5.14).
func TestKillEach(t *testing.T) {
	g := create(t, testParent(t), "w")
	startIn(t, g, nil, "sh", "-c", "sleep 100 & (sleep 100 & sleep 100; true) & wait")
	waitProcs(t, g, 5)
	fds := pidfds(t, g)
	if err := g.killEach(); err != nil {
		t.Fatal(err)
	}
	if err := g.waitEmpty(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if !exited(fd) {
			t.Error("a process still runs")
		}
	}
	if data, _ := os.ReadFile(g.Path() + "/cgroup.freeze"); strings.TrimSpace(string(data)) != "0" {
		t.Errorf("killEach left cgroup.freeze at %q", data)
	}
}
