package main

// Attack tests of `bpfgate run` as a sandbox (issue 9, problems 1, 2, 3 and
// the exit status and SIGKILL parts of 9), through the real CLI.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// markerEnv tags the processes of one test, so that it finds (and cleans up)
// its own and never counts another test's.
const markerEnv = "BPFGATE_TEST_MARKER"

func newMarker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// bpfgateCmd returns the CLI as a command with extra files from fd 3 on
// (nil entries are closed) and marker in its environment.
func bpfgateCmd(t *testing.T, marker string, files []*os.File, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	if marker != "" {
		cmd.Env = append(cmd.Env, markerEnv+"="+marker)
	}
	cmd.ExtraFiles = files
	// A workload that outlives bpfgate keeps the output pipes open: do
	// not let that hang the test.
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

func runCLI(t *testing.T, files []*os.File, args ...string) result {
	t.Helper()
	cmd, stdout, stderr := bpfgateCmd(t, "", files, args...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// markedProcs lists the processes that carry marker, by pid, with their
// command lines.
func markedProcs(marker string) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if slices.Contains(strings.Split(string(env), "\x00"), markerEnv+"="+marker) {
			cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			out[pid] = strings.TrimRight(string(cmdline), "\x00")
		}
	}
	return out
}

// killMarked kills what is left of a test's processes.
func killMarked(marker string) {
	for pid := range markedProcs(marker) {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			unix.Close(fd)
		}
	}
}

// findMarked waits (at most 10 s) for the process with marker whose
// command line is cmdline (arguments joined by NUL), and holds it by a pidfd.
func findMarked(t *testing.T, marker, cmdline string) (int, int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for pid, c := range markedProcs(marker) {
			if c != cmdline {
				continue
			}
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue
			}
			t.Cleanup(func() { unix.Close(fd) })
			return pid, fd
		}
	}
	t.Fatalf("no process %q with %s=%s within 10s", strings.ReplaceAll(cmdline, "\x00", " "), markerEnv, marker)
	return 0, 0
}

func pidfdAlive(fd int) bool {
	return unix.PidfdSendSignal(fd, 0, nil, 0) == nil
}

// TestRunNetHostWarns: --net host is an opt-in that says what it exposes;
// the default says nothing of host interfaces.
func TestRunNetHostWarns(t *testing.T) {
	testutil.RequireRoot(t)
	r := runCLI(t, nil, "run", "--profile", "net", "--net", "host", "--", "true")
	if r.code != 0 {
		t.Fatalf("--net host: %+v", r)
	}
	if !mentionsHostInterfaces(r.stderr) {
		t.Errorf("--net host prints no warning about host interfaces on stderr: %q", r.stderr)
	}
	r = runCLI(t, nil, "run", "--profile", "net", "--", "true")
	if r.code != 0 {
		t.Fatalf("default network: %+v", r)
	}
	if mentionsHostInterfaces(r.stderr) {
		t.Errorf("the default (own network namespace) warns about host interfaces: %q", r.stderr)
	}
}

func mentionsHostInterfaces(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "host") && strings.Contains(s, "interface")
}

// TestRunRefusesSystemIDs: maps onto host ids of system users and groups
// need --allow-system-ids (the shadow group could read /etc/shadow).
func TestRunRefusesSystemIDs(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		args []string
		id   string
	}{
		{"shadow group", []string{"--gid-map", "0:42:1"}, "42"},
		{"passwd user", []string{"--uid-map", "0:65534:1"}, "65534"}, // nobody
		{"low uid", []string{"--uid-map", "0:500:1"}, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"run", "--profile", "demo"}, tc.args...), "--", "echo", "RAN")
			r := runCLI(t, nil, args...)
			if r.code == 0 || strings.Contains(r.stdout, "RAN") {
				t.Errorf("%s: the workload ran: %+v", strings.Join(tc.args, " "), r)
			}
			if !strings.Contains(r.stderr, "--allow-system-ids") || !strings.Contains(r.stderr, tc.id) {
				t.Errorf("%s: the error does not name host id %s and how to allow it (--allow-system-ids): %q", strings.Join(tc.args, " "), tc.id, r.stderr)
			}
		})
	}
	r := runCLI(t, nil, "run", "--profile", "demo", "--gid-map", "0:42:1", "--allow-system-ids", "--", "echo", "RAN")
	if r.code != 0 || r.stdout != "RAN\n" {
		t.Errorf("--gid-map 0:42:1 --allow-system-ids: %+v", r)
	}
}

// fdsOf parses `ls -l /proc/self/fd`: fd number to target, without the
// directory ls itself opened to list.
func fdsOf(t *testing.T, out string) map[int]string {
	t.Helper()
	fds := map[int]string{}
	for _, line := range strings.Split(out, "\n") {
		before, target, ok := strings.Cut(line, " -> ")
		if !ok {
			continue
		}
		f := strings.Fields(before)
		fd, err := strconv.Atoi(f[len(f)-1])
		if err != nil {
			t.Fatalf("bad ls line %q", line)
		}
		if strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd") {
			continue // ls's own
		}
		fds[fd] = target
	}
	return fds
}

// secretFile makes a root-only file, as /etc/shadow is.
func secretFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("secret\n")
	t.Cleanup(func() { f.Close() })
	return f
}

// TestRunClosesInheritedFDs: only 0, 1, 2 and --preserve-fds reach the
// workload.
func TestRunClosesInheritedFDs(t *testing.T) {
	testutil.RequireRoot(t)
	secret := secretFile(t, "shadow")
	r := runCLI(t, []*os.File{nil, nil, nil, nil, nil, nil, secret}, // fd 9
		"run", "--profile", "demo", "--", "ls", "-l", "/proc/self/fd")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	for fd, target := range fdsOf(t, r.stdout) {
		if fd > 2 {
			t.Errorf("the workload inherited fd %d (%s) from the caller of bpfgate", fd, target)
		}
	}

	kept, leaked := secretFile(t, "kept"), secretFile(t, "leaked")
	r = runCLI(t, []*os.File{kept, leaked}, // fds 3 and 4
		"run", "--profile", "demo", "--preserve-fds", "1", "--", "ls", "-l", "/proc/self/fd")
	if r.code != 0 {
		t.Fatalf("--preserve-fds 1: %+v", r)
	}
	fds := fdsOf(t, r.stdout)
	if !strings.HasSuffix(fds[3], "/"+filepath.Base(kept.Name())) {
		t.Errorf("--preserve-fds 1: fd 3 is %q, want the caller's fd 3 %s", fds[3], kept.Name())
	}
	for fd, target := range fds {
		if fd > 3 {
			t.Errorf("--preserve-fds 1: the workload inherited fd %d (%s) from the caller of bpfgate", fd, target)
		}
	}
}

// TestRunExitStatus: exec failures exit as a shell and podman exit; the
// workload's own status and signals pass through.
func TestRunExitStatus(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\ntrue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmd  []string
		want int
	}{
		{"missing path", []string{"/nonexistent"}, 127},
		{"missing in PATH", []string{"no-such-command-bpfgate"}, 127},
		{"not executable", []string{plain}, 126},
		{"directory", []string{dir}, 126},
		{"exit 7", []string{"sh", "-c", "exit 7"}, 7},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"run", "-q", "--profile", "demo", "--"}, tc.cmd...)...)
			if r.code != tc.want {
				t.Errorf("%s: exit status %d, want %d\nstderr: %s", strings.Join(tc.cmd, " "), r.code, tc.want, r.stderr)
			}
		})
	}
}

// TestRunSIGTERMReachesWorkload: SIGTERM to bpfgate reaches the workload,
// even with an init between them.
func TestRunSIGTERMReachesWorkload(t *testing.T) {
	testutil.RequireRoot(t)
	marker := newMarker(t)
	t.Cleanup(func() { killMarked(marker) })
	cmd, _, stderr := bpfgateCmd(t, marker, nil, "run", "-q", "--profile", "demo", "--", "sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	_, sleepFD := findMarked(t, marker, "sleep\x00100")
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Errorf("after SIGTERM bpfgate ended with %v, want exit status 143\nstderr: %s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("bpfgate still runs 5s after SIGTERM: the signal did not reach sleep")
	}
	if pidfdAlive(sleepFD) {
		t.Errorf("the workload (sleep) still runs after bpfgate exited on SIGTERM")
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start))
}

// TestRunSIGKILLLeavesNothing: when bpfgate is SIGKILLed, the workload, its
// namespaces and its cgroup go with it.
func TestRunSIGKILLLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	marker := newMarker(t)
	t.Cleanup(func() { killMarked(marker) })
	cmd, _, stderr := bpfgateCmd(t, marker, nil, "run", "-q", "--profile", "demo", "--", "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	sleepPid, sleepFD := findMarked(t, marker, "sleep\x001000")
	proc := "/proc/" + strconv.Itoa(sleepPid)

	// What the workload has, seen from the host, while it runs.
	uidMap, err := os.ReadFile(proc + "/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(uidMap))
	if len(f) < 3 {
		t.Fatalf("uid map of the workload: %q", uidMap)
	}
	uidStart, _ := strconv.ParseUint(f[1], 10, 32)
	uidCount, _ := strconv.ParseUint(f[2], 10, 32)
	var nsUser, nsMnt unix.Stat_t
	if unix.Stat(proc+"/ns/user", &nsUser) != nil || unix.Stat(proc+"/ns/mnt", &nsMnt) != nil {
		t.Fatal("cannot stat the workload's namespaces")
	}
	mounts, err := mountinfo.PidMountInfo(sleepPid)
	if err != nil {
		t.Fatal(err)
	}
	var bpffs []string
	for _, m := range mounts {
		if m.FSType == "bpf" {
			bpffs = append(bpffs, m.Mountpoint+" "+m.VFSOptions)
		}
	}
	if len(bpffs) == 0 {
		t.Fatalf("the workload has no bpffs, so this test proves nothing")
	}
	// Its cgroup, and the root of its cgroup namespace (where the cgroup2
	// mount on its /sys/fs/cgroup is rooted): both must go with it.
	cgroup := testutil.CgroupOf(t, strconv.Itoa(sleepPid))
	cgroups := []string{cgroup}
	for _, m := range mounts {
		if m.FSType == "cgroup2" && m.Mountpoint == "/sys/fs/cgroup" && m.Root != cgroup {
			cgroups = append(cgroups, m.Root)
		}
	}
	var cgroupDirs []string
	mine := testutil.CgroupOf(t, "self")
	for _, cg := range cgroups {
		if cg == mine || cg == "/" {
			t.Errorf("the workload runs in cgroup %s, the cgroup of the process that started it (%s): it has no cgroup of its own", cg, mine)
		} else {
			cgroupDirs = append(cgroupDirs, filepath.Join(hostCgroup2Root(t), cg))
		}
	}
	t.Logf("workload: pid %d, uids %d-%d, user ns %d, mount ns %d, bpffs %q, cgroups %q",
		sleepPid, uidStart, uidStart+uidCount-1, nsUser.Ino, nsMnt.Ino, bpffs, cgroups)

	cmd.Process.Kill()
	<-done
	var leaks []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		leaks = nil
		if pidfdAlive(sleepFD) {
			leaks = append(leaks, fmt.Sprintf("the workload (sleep, pid %d) still runs", sleepPid))
		}
		for _, dir := range cgroupDirs {
			if _, err := os.Stat(dir); err == nil {
				leaks = append(leaks, "its cgroup "+dir+" still exists")
			}
		}
		leaks = append(leaks, leftoverProcs(marker, uidStart, uidStart+uidCount, nsUser.Ino, nsMnt.Ino)...)
		hostBPFFS, _ := mountinfo.GetMounts(mountinfo.FSTypeFilter("bpf"))
		for _, m := range hostBPFFS {
			if strings.Contains(","+m.VFSOptions+",", ",uid="+strconv.FormatUint(uidStart, 10)+",") {
				leaks = append(leaks, "the host has a bpffs of the workload's uid at "+m.Mountpoint)
			}
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range leaks {
		t.Errorf("5s after SIGKILL of bpfgate: %s", l)
	}
	if len(leaks) > 0 {
		t.Logf("bpfgate stderr: %s", stderr.String())
	}
}

// leftoverProcs describes processes that are the workload's by marker,
// by host uid in [uidStart, uidEnd) or by user or mount namespace.
func leftoverProcs(marker string, uidStart, uidEnd, nsUser, nsMnt uint64) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		proc := "/proc/" + e.Name()
		cmdline, _ := os.ReadFile(proc + "/cmdline")
		what := fmt.Sprintf("process %s (%s)", e.Name(), strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "))
		var why []string
		env, _ := os.ReadFile(proc + "/environ")
		if slices.Contains(strings.Split(string(env), "\x00"), markerEnv+"="+marker) {
			why = append(why, "was started by this bpfgate run")
		}
		status, _ := os.ReadFile(proc + "/status")
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				for _, u := range f[1:] {
					if n, err := strconv.ParseUint(u, 10, 32); err == nil && n >= uidStart && n < uidEnd {
						why = append(why, "runs as host uid "+u+" of the workload's range")
						break
					}
				}
			}
		}
		var st unix.Stat_t
		if unix.Stat(proc+"/ns/user", &st) == nil && st.Ino == nsUser {
			why = append(why, "is in the workload's user namespace")
		}
		if unix.Stat(proc+"/ns/mnt", &st) == nil && st.Ino == nsMnt {
			why = append(why, "holds the workload's mount namespace and its bpffs")
		}
		if len(why) > 0 {
			out = append(out, what+" "+strings.Join(why, ", "))
		}
	}
	return out
}

// hostCgroup2Root returns where the root of the host's cgroup2 hierarchy is
// mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
func hostCgroup2Root(t *testing.T) string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Root == "/" {
			return m.Mountpoint
		}
	}
	testutil.Skip(t, "no cgroup2 mount of the root of the hierarchy")
	return ""
}
