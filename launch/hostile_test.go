package launch_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// hostileUID is the unprivileged host uid (and gid) the attacker runs as: it
// owns a user namespace of its own, as anybody may after `unshare -Ur`.
const hostileUID = 4242

// bpfFSMagic is BPF_FS_MAGIC as the attacker reports statfs.
const bpfFSMagic = "0xcafe4a11"

// TestHostileNamespaceOwner runs MountInto against a process whose user
// namespace belongs to an attacker (testdata/hostile/hostile.c) that watches
// for bpfgate's helper and attacks it as soon as it shows up in the
// namespace: ptrace, pidfd_getfd of the handshake socket followed by an fs
// context of its own, holding the helper's fds, SIGSTOP (at once, or once the
// helper has mounted and is about to exit), SIGKILL. None of it
// may work: no ptrace, no fd, nothing but the requested bpffs mounted, and
// MountInto returns within a bound, leaving no helper and no fd behind.
func TestHostileNamespaceOwner(t *testing.T) {
	testutil.RequireRoot(t)
	bin := buildHostile(t)
	old := bpffs.HandshakeTimeout
	bpffs.HandshakeTimeout = 2 * time.Second
	t.Cleanup(func() { bpffs.HandshakeTimeout = old })
	// Two bounded handshake waits and the end of the helper, with room for
	// a loaded machine.
	bound := 2*bpffs.HandshakeTimeout + 2*time.Second
	opts := bpffs.Options{Delegation: demoSet(t)}

	for _, tc := range []struct {
		mode string
		// mustMount: the attack does not aim at stopping the mount, so
		// every MountInto must succeed.
		mustMount bool
		// refused: failure events of the attacker, each of which must be
		// seen with EPERM at least once (proof that it tried and the
		// kernel said no).
		refused []string
		// until: the attempts go on until the attacker has reported
		// this event three times (default "saw"), or 30 attempts.
		until string
	}{
		{mode: "none", mustMount: true},
		{mode: "ptrace", mustMount: true, refused: []string{"ptrace_failed/seize", "ptrace_failed/attach"}},
		{mode: "getfd", mustMount: true, refused: []string{"getfd_failed/pidfd_getfd"}},
		{mode: "hold", mustMount: true, refused: []string{"getfd_failed/pidfd_getfd"}},
		{mode: "stop"},
		{mode: "stop-late", until: "stopped"},
		{mode: "kill"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			a := startHostile(t, bin, tc.mode)
			fdsBefore := countFDs(t)
			until := tc.until
			if until == "" {
				until = "saw"
			}
			attempts, mounted, hung := 0, 0, false
			for attempts < 30 && a.count(until) < 3 {
				attempts++
				start := time.Now()
				err, pending := mountIntoWithin(a.pid, a.target, opts, bound)
				if pending != nil {
					t.Errorf("attempt %d: MountInto had not returned after %v: the owner of the target's user namespace can hang bpfgate", attempts, bound)
					a.checkMounts(t)
					a.unhang(t, pending)
					hung = true
					break
				}
				if left := a.helpers(); len(left) > 0 {
					t.Errorf("attempt %d: MountInto returned (%v) but left helper processes behind in the target's user namespace: %v", attempts, err, left)
					a.killHelpers()
				}
				if err != nil {
					t.Logf("attempt %d: MountInto failed after %v: %v", attempts, time.Since(start).Round(time.Millisecond), err)
					if tc.mustMount {
						t.Errorf("attempt %d: an attack that does not stop the helper made MountInto fail: %v", attempts, err)
					}
					continue
				}
				mounted++
				if c := a.check(t); c.Magic != bpfFSMagic || c.Token != "ok" {
					t.Errorf("attempt %d: MountInto succeeded, but the target holds magic %s (%s) and BPF_TOKEN_CREATE there gives %q: not a bpffs owned by the target's user namespace",
						attempts, c.Magic, c.Error, c.Token)
				}
			}
			t.Logf("%d attempts, %d mounted, attacker saw %d helpers, %d %s", attempts, mounted, a.count("saw"), a.count(until), until)
			if a.count(until) == 0 {
				t.Errorf("in %d attempts the attacker never got its chance (no %q event): the test proved nothing", attempts, until)
			}
			if tc.mustMount && mounted == 0 && !hung {
				t.Errorf("no MountInto succeeded")
			}
			a.judge(t, tc.refused)
			if !hung {
				a.checkMounts(t)
			}
			if after := countFDs(t); after > fdsBefore {
				t.Errorf("this process had %d fds before the attempts and %d after", fdsBefore, after)
			}
		})
	}
}

// mountIntoWithin runs MountInto and gives up waiting after bound. If it
// gave up, pending delivers MountInto's result once it finally returns.
func mountIntoWithin(pid int, path string, opts bpffs.Options, bound time.Duration) (err error, pending <-chan error) {
	res := make(chan error, 1)
	go func() { res <- launch.MountInto(pid, path, opts) }()
	select {
	case err := <-res:
		return err, nil
	case <-time.After(bound):
		return nil, res
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// buildHostile compiles the attacker into a directory an unprivileged user
// can reach.
func buildHostile(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testutil.Skip(t, "no C compiler for the attacker: "+err.Error())
	}
	bin := filepath.Join(testutil.PublicDir(t), "hostile")
	out, err := exec.Command(gcc, "-O2", "-Wall", "-Werror", "-o", bin, "testdata/hostile/hostile.c").CombinedOutput()
	if err != nil {
		t.Fatalf("build the attacker: %v\n%s", err, out)
	}
	return bin
}

// hostileEvent is one JSON line the attacker reports.
type hostileEvent struct {
	Event  string `json:"event"`
	Pid    int    `json:"pid"`
	Op     string `json:"op"`
	Fd     int    `json:"fd"`
	Errno  string `json:"errno"`
	How    string `json:"how"`
	Kind   string `json:"kind"`
	Msg    string `json:"msg"`
	What   string `json:"what"`
	FSType string `json:"fstype"`
	Magic  string `json:"magic"`
	Token  string `json:"token"`
	Target string `json:"target"`
	Error  string `json:"error"`
}

// hostile is a running attacker.
type hostile struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	pid    int
	base   string // the directory it mounted its tmpfs under (DIR/mnt)
	target string // DIR/mnt/target, where bpfgate is asked to mount
	ns     unix.Stat_t

	mu     sync.Mutex
	events []hostileEvent
	more   chan struct{}
	stderr bytes.Buffer
}

func startHostile(t *testing.T, bin, mode string) *hostile {
	t.Helper()
	base := testutil.PublicDir(t)
	if err := os.Mkdir(filepath.Join(base, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &hostile{base: base, more: make(chan struct{}, 1)}
	a.cmd = exec.Command(bin, mode, base)
	a.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	a.cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: hostileUID, Gid: hostileUID, Groups: []uint32{}},
	}
	a.cmd.Stderr = &lockedWriter{mu: &a.mu, w: &a.stderr}
	// Once the attacker is dead, its pipes close within a bound even if
	// something it left behind still holds them.
	a.cmd.WaitDelay = 5 * time.Second
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e hostileEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = hostileEvent{Event: "garbled", Msg: sc.Text()}
			}
			a.mu.Lock()
			a.events = append(a.events, e)
			a.mu.Unlock()
			select {
			case a.more <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		a.stop()
		<-done
		_ = a.cmd.Wait()
	})
	ready := a.wait(t, "ready", 0, 10*time.Second)
	a.pid, a.target = ready.Pid, ready.Target
	if a.pid != a.cmd.Process.Pid {
		t.Fatalf("attacker says it is pid %d, but it is pid %d", a.pid, a.cmd.Process.Pid)
	}
	if err := unix.Stat("/proc/"+strconv.Itoa(a.pid)+"/ns/user", &a.ns); err != nil {
		t.Fatal(err)
	}
	return a
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// stop ends the attacker: stdin EOF, then SIGKILL for an attacker that is
// busy attacking.
func (a *hostile) stop() {
	a.stdin.Close()
	_ = a.cmd.Process.Kill()
}

func (a *hostile) snapshot() []hostileEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]hostileEvent(nil), a.events...)
}

func (a *hostile) count(event string) int {
	n := 0
	for _, e := range a.snapshot() {
		if e.Event == event {
			n++
		}
	}
	return n
}

// wait returns the (n+1)th event named event, failing the test after timeout.
func (a *hostile) wait(t *testing.T, event string, n int, timeout time.Duration) hostileEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		seen := 0
		for _, e := range a.snapshot() {
			if e.Event == "fatal" {
				t.Fatalf("attacker failed: %s: %s", e.What, e.Errno)
			}
			if e.Event == event {
				if seen == n {
					return e
				}
				seen++
			}
		}
		select {
		case <-a.more:
		case <-deadline:
			a.mu.Lock()
			defer a.mu.Unlock()
			t.Fatalf("attacker did not report %q within %v\nstderr: %s", event, timeout, a.stderr.String())
		}
	}
}

// check asks the attacker what is mounted at its target.
func (a *hostile) check(t *testing.T) hostileEvent {
	t.Helper()
	n := a.count("check")
	if _, err := io.WriteString(a.stdin, "check\n"); err != nil {
		t.Fatalf("ask the attacker to check its target: %v", err)
	}
	return a.wait(t, "check", n, 10*time.Second)
}

// helpers lists the processes in the attacker's user namespace other than
// the attacker, and this process's zombie children (a helper that was
// never reaped).
func (a *hostile) helpers() []string {
	var left []string
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == a.pid {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/user", &st) == nil && st.Ino == a.ns.Ino && st.Dev == a.ns.Dev {
			left = append(left, fmt.Sprintf("pid %d (%s)", pid, procState(pid)))
			continue
		}
		if state := procState(pid); strings.HasPrefix(state, "Z") && procPPid(pid) == self {
			left = append(left, fmt.Sprintf("pid %d (zombie child)", pid))
		}
	}
	return left
}

func procStat(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

func procState(pid int) string {
	if f := procStat(pid); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func procPPid(pid int) int {
	if f := procStat(pid); len(f) > 1 {
		n, _ := strconv.Atoi(f[1])
		return n
	}
	return 0
}

// killHelpers kills every process in the attacker's user namespace but the
// attacker: the helpers that bpfgate left there.
func (a *hostile) killHelpers() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == a.pid {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/user", &st) == nil && st.Ino == a.ns.Ino && st.Dev == a.ns.Dev {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// unhang frees a MountInto that does not return: first by killing its
// helpers, then the attacker (who may hold its pipes).
func (a *hostile) unhang(t *testing.T, pending <-chan error) {
	t.Helper()
	a.killHelpers()
	select {
	case err := <-pending:
		t.Logf("MountInto returned once its helper was killed: %v", err)
		return
	case <-time.After(3 * time.Second):
	}
	_ = a.cmd.Process.Kill() // stdin stays open: the fd count stays comparable
	select {
	case err := <-pending:
		t.Logf("MountInto returned only once the attacker was killed: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatalf("MountInto is still blocked after its helpers and the attacker were killed")
	}
}

// checkMounts: the attacker's namespace holds nothing under its directory
// but its own tmpfs and bpffs at the target, and the host nothing at all.
func (a *hostile) checkMounts(t *testing.T) {
	t.Helper()
	mnt := filepath.Join(a.base, "mnt")
	ms, err := mountinfo.PidMountInfo(a.pid)
	if err != nil {
		t.Errorf("mounts of the attacker: %v", err)
	}
	for _, m := range ms {
		switch {
		case m.Mountpoint == mnt && m.FSType == "tmpfs":
		case m.Mountpoint == a.target && m.FSType == "bpf":
		case m.Mountpoint == a.base || strings.HasPrefix(m.Mountpoint, a.base+"/"):
			t.Errorf("foreign mount in the attacker's namespace: %s at %s (source %s, options %s)", m.FSType, m.Mountpoint, m.Source, m.VFSOptions)
		}
	}
	host, err := mountinfo.GetMounts(mountinfo.PrefixFilter(a.base))
	if err != nil {
		t.Errorf("host mounts: %v", err)
	}
	for _, m := range host {
		t.Errorf("mount in the host's namespace: %s at %s", m.FSType, m.Mountpoint)
	}
}

// judge fails the test for every step of the attack that worked, and for
// every expected refusal that never came.
func (a *hostile) judge(t *testing.T, refused []string) {
	t.Helper()
	eperm := map[string]bool{}
	for _, e := range a.snapshot() {
		switch e.Event {
		case "ptrace_ok":
			t.Errorf("the attacker ptraced the helper (pid %d, %s)", e.Pid, e.Op)
		case "getfd_ok":
			t.Errorf("the attacker took fd %d (%s) of the helper (pid %d) with pidfd_getfd", e.Fd, e.Kind, e.Pid)
		case "sent_ramfs":
			t.Errorf("the attacker offered host root a %s context over the helper's fd %d", e.FSType, e.Fd)
		case "reply":
			t.Errorf("host root answered %q to the attacker's own fs context", e.Msg)
		case "mounted_ramfs", "mounted_fd":
			t.Errorf("the attacker mounted %s (%s, magic %s) at %s through the handshake", e.What, e.FSType, e.Magic, e.Target)
		case "fatal", "garbled":
			t.Errorf("attacker: %+v", e)
		case "ptrace_failed", "getfd_failed":
			if e.Errno == "EPERM" {
				eperm[e.Event+"/"+e.Op] = true
			} else {
				t.Logf("attacker: %s %s of pid %d: %s", e.Event, e.Op, e.Pid, e.Errno)
			}
		}
	}
	for _, r := range refused {
		if !eperm[r] {
			t.Errorf("the attacker never got EPERM for %s", r)
		}
	}
}
