package seccomp_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

func TestMain(m *testing.M) {
	launch.Init()
	os.Exit(m.Run())
}

// sandboxPid starts `sleep` under bpfgate run's sandbox and returns the
// host pid of the command (pid 2 in the sandbox).
func sandboxPid(t *testing.T) int {
	t.Helper()
	testutil.RequireRoot(t)
	w, err := launch.Start(launch.Config{Args: []string{"sleep", "60"},
		Delegation: delegate.Set{Cmds: 1, Maps: 1 << 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Signal(syscall.SIGKILL)
		w.Wait()
	})
	procs, err := os.ReadFile(filepath.Join(w.Cgroup(), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(procs)) {
		status, _ := os.ReadFile("/proc/" + p + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == "2" {
				pid, _ := strconv.Atoi(p)
				return pid
			}
		}
	}
	t.Fatalf("no pid 2 in %s: %q", w.Cgroup(), procs)
	return 0
}

func hold(t *testing.T, pid int) *launch.Process {
	t.Helper()
	p, err := launch.OpenProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestSandboxFilter reads the filter bpfgate run's workloads get (written
// in C in launch/nsexec) from a running workload and evaluates it: bpf(2)
// passes, unix sockets and io_uring do not.
func TestSandboxFilter(t *testing.T) {
	pid := sandboxPid(t)
	filters, err := seccomp.ReadFilters(hold(t, pid), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(filters) != 1 {
		t.Fatalf("%d filters, want 1", len(filters))
	}
	v, err := seccomp.EvalBPF(filters)
	if err != nil {
		testutil.Skip(t, err.Error())
	}
	if !v.Allowed() || v.String() != "allow (every command)" {
		t.Errorf("bpf(2): %s", v)
	}
	eperm := seccomp.Errno | seccomp.Action(unix.EPERM)
	for _, tc := range []struct {
		name string
		nr   int32
		args []uint64
		want seccomp.Action
	}{
		{"bpf", unix.SYS_BPF, []uint64{36}, seccomp.Allow},
		{"socket(AF_UNIX)", unix.SYS_SOCKET, []uint64{unix.AF_UNIX, unix.SOCK_STREAM}, eperm},
		{"socket(AF_INET)", unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_STREAM}, seccomp.Allow},
		{"socketpair stream", unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_CLOEXEC}, seccomp.Allow},
		{"socketpair dgram", unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX, unix.SOCK_DGRAM}, eperm},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, nil, eperm},
		{"x32 socket", unix.SYS_SOCKET | 0x40000000, []uint64{unix.AF_INET}, eperm},
		{"read", unix.SYS_READ, nil, seccomp.Allow},
	} {
		if got := seccomp.RunSyscall(filters, int32(tc.nr), tc.args...); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	// The process runs on, untraced.
	waitUntraced(t, pid)
}

func status(t *testing.T, pid int, key string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// waitUntraced fails unless pid is neither traced nor stopped within 2 s.
func waitUntraced(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		tracer, state := status(t, pid, "TracerPid"), status(t, pid, "State")
		if tracer == "0" && !strings.HasPrefix(state, "t") && !strings.HasPrefix(state, "T") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: TracerPid %s, State %s", pid, tracer, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestReadFiltersTimeout: a process that does not stop in time is left
// neither traced nor stopped.
func TestReadFiltersTimeout(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := startSleep(t)
	p := hold(t, cmd.Process.Pid)
	timedOut := false
	for range 50 {
		_, err := seccomp.ReadFilters(p, time.Nanosecond)
		if errors.Is(err, seccomp.ErrTimeout) {
			timedOut = true
		} else if !errors.Is(err, seccomp.ErrNotFiltered) {
			t.Fatalf("got %v, want ErrTimeout or ErrNotFiltered", err)
		}
		waitUntraced(t, cmd.Process.Pid)
		if timedOut {
			break
		}
	}
	if !timedOut {
		// Never seen: stopping takes a wakeup and a context switch.
		testutil.Skip(t, "the process always stopped within a nanosecond: the timeout path was not exercised")
	}
}

// TestReadFiltersUnfiltered: a process without seccomp says so, and runs on.
func TestReadFiltersUnfiltered(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := startSleep(t)
	if _, err := seccomp.ReadFilters(hold(t, cmd.Process.Pid), 5*time.Second); !errors.Is(err, seccomp.ErrNotFiltered) {
		t.Fatalf("got %v, want ErrNotFiltered", err)
	}
	waitUntraced(t, cmd.Process.Pid)
}

// TestReadFiltersStopped: a process stopped by SIGSTOP stays stopped (the
// stop is its own), and is not traced afterwards.
func TestReadFiltersStopped(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	p := hold(t, pid)
	cmd.Process.Signal(syscall.SIGSTOP)
	for i := 0; !strings.HasPrefix(status(t, pid, "State"), "T"); i++ {
		if i > 200 {
			t.Fatal("sleep did not stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := seccomp.ReadFilters(p, 5*time.Second); !errors.Is(err, seccomp.ErrNotFiltered) {
		t.Fatalf("got %v, want ErrNotFiltered", err)
	}
	if tr := status(t, pid, "TracerPid"); tr != "0" {
		t.Errorf("TracerPid %s", tr)
	}
	cmd.Process.Signal(syscall.SIGCONT)
	waitUntraced(t, pid)
}

// TestReadFiltersTraced: a process someone else traces is refused at once.
func TestReadFiltersTraced(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	// Another tracer: a thread of this test that seizes the process and
	// ends (detaching it) once the test is done.
	seized, release := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		seized <- unix.PtraceSeize(pid)
		<-release
	}()
	defer close(release)
	if err := <-seized; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := seccomp.ReadFilters(hold(t, pid), 5*time.Second)
	if err == nil || !errors.Is(err, unix.EPERM) {
		t.Errorf("got %v, want EPERM", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}
