package launch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/idpool"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/launch/nsexec"
	"github.com/bpfgate/bpfgate/token"
)

func TestMain(m *testing.M) {
	launch.Init()
	if kind := os.Getenv(workloadEnv); kind != "" {
		os.Exit(runWorkload(kind))
	}
	os.Exit(m.Run())
}

func names(t *testing.T) *delegate.Names {
	t.Helper()
	n, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func demoSet(t *testing.T) delegate.Set {
	t.Helper()
	s, err := names(t).SetFlags("map_create:prog_load:btf_load", "hash:array", "socket_filter:xdp", "cgroup_inet_ingress:xdp")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runJSON runs the test binary as a workload and decodes what it reports.
func runJSON(t *testing.T, cfg launch.Config, kind string, env ...string) map[string]string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cfg.Args = []string{"/proc/self/exe"}
	cfg.Env = append(append(os.Environ(), workloadEnv+"="+kind), env...)
	cfg.Stdout, cfg.Stderr = &stdout, &stderr
	code, err := launch.Run(cfg)
	if err != nil || code != 0 {
		t.Fatalf("workload %s: code %d, %v\nstderr: %s", kind, code, err, stderr.String())
	}
	var res map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("workload %s: %v\nstdout: %s", kind, err, stdout.String())
	}
	return res
}

func expect(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestDelegatedTypesWorkOthersDenied(t *testing.T) {
	testutil.RequireRoot(t)
	set := demoSet(t)
	res := runJSON(t, launch.Config{Delegation: set, Caps: delegate.CapsFor(names(t), set)}, "cilium")
	expect(t, res, map[string]string{
		"map/hash": "ok", "map/array": "ok", "prog/socket_filter": "ok", "prog/xdp": "ok",
		"map/lru_hash": "EPERM", "map/ringbuf": "EPERM", "prog/kprobe": "EPERM",
	})
	// XDP also takes CAP_NET_ADMIN in the workload's user namespace.
	res = runJSON(t, launch.Config{Delegation: set, Caps: []delegate.Cap{unix.CAP_BPF}}, "cilium")
	expect(t, res, map[string]string{"prog/socket_filter": "ok", "prog/xdp": "EPERM"})
}

func TestNoDelegationDeniesEverything(t *testing.T) {
	testutil.RequireRoot(t)
	res := runJSON(t, launch.Config{}, "cilium")
	for k, v := range res {
		if v != "EPERM" {
			t.Errorf("%s: got %q, want EPERM", k, v)
		}
	}
	if len(res) == 0 {
		t.Fatal("no results")
	}
}

func TestNoTokenFromForeignBPFFS(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	if err := bpffs.Mount(dir, bpffs.Options{Delegation: demoSet(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bpffs.Unmount(dir) })

	// The host itself: tokens do not exist in the initial user namespace.
	if _, err := token.Create(dir); !errors.Is(err, token.ErrInitUserNS) {
		t.Errorf("token in the initial user namespace: got %v", err)
	}
	// The sandbox covers the host's bpffs mounts: at the path a workload
	// finds no bpffs at all.
	res := runJSON(t, launch.Config{Delegation: demoSet(t)}, "token-from", "BPFGATE_TEST_PATH="+dir)
	if !strings.Contains(res["error"], "not the root of a BPF filesystem") {
		t.Errorf("the host's bpffs at %s is in reach of the workload: %v", dir, res)
	}
	// Handed an fd of it, it finds one that belongs to another user
	// namespace, and the error says so.
	root, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	res = runJSON(t, launch.Config{Delegation: demoSet(t), ExtraFiles: []*os.File{root}}, "token-from", "BPFGATE_TEST_PATH=/proc/self/fd/3")
	expect(t, res, map[string]string{"result": "EPERM"})
	if !strings.Contains(res["error"], "owned by another user namespace") {
		t.Errorf("error does not explain: %q", res["error"])
	}
}

func TestIdentityAndCapabilities(t *testing.T) {
	testutil.RequireRoot(t)
	res := runJSON(t, launch.Config{Delegation: demoSet(t)}, "identity")
	// Host ids come from the pool, never the host's own accounts.
	if f := strings.Fields(res["uid_map"]); len(f) != 3 || f[0] != "0" || f[2] != "65536" {
		t.Errorf("uid_map %q: want one block of 65536 ids", res["uid_map"])
	} else if base, _ := strconv.ParseUint(f[1], 10, 32); base < idpool.DefaultStart {
		t.Errorf("uid_map %q: host ids below the pool's start %d", res["uid_map"], idpool.DefaultStart)
	}
	delete(res, "uid_map")
	expect(t, res, map[string]string{
		"CapEff": "0000008000000000", // CAP_BPF only
		"CapBnd": "0000008000000000",
	})
	res = runJSON(t, launch.Config{Delegation: demoSet(t), Caps: []delegate.Cap{unix.CAP_BPF, unix.CAP_NET_ADMIN},
		UIDMap: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 200000, Size: 1}}}, "identity")
	expect(t, res, map[string]string{
		"uid_map": "0 200000 1",
		"CapEff":  "0000008000001000",
	})
}

func TestRefusesHostRoot(t *testing.T) {
	_, err := launch.Start(launch.Config{Args: []string{"true"},
		UIDMap: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}})
	if os.Geteuid() == 0 && !errors.Is(err, launch.ErrHostRoot) {
		t.Fatalf("got %v, want ErrHostRoot", err)
	}
	if os.Geteuid() != 0 && !errors.Is(err, launch.ErrNotRoot) {
		t.Fatalf("got %v, want ErrNotRoot", err)
	}
}

func TestExitStatusAndStreams(t *testing.T) {
	testutil.RequireRoot(t)
	var stdout, stderr bytes.Buffer
	code, err := launch.Run(launch.Config{
		Args:       []string{"sh", "-c", `read x; echo "got $x"; echo oops >&2; exit 3`},
		Delegation: demoSet(t),
		Stdin:      strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil || code != 3 {
		t.Fatalf("code %d, %v", code, err)
	}
	if stdout.String() != "got hello\n" || stderr.String() != "oops\n" {
		t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	w, err := launch.Start(launch.Config{Args: []string{"sleep", "30"}, Delegation: demoSet(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, _ := w.Wait(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("killed by SIGTERM: code %d", code)
	}
}

func TestCommandErrors(t *testing.T) {
	testutil.RequireRoot(t)
	_, err := launch.Start(launch.Config{Args: []string{"no-such-command-bpfgate"}, Delegation: demoSet(t)})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing command: %v", err)
	}
	dir, err := os.MkdirTemp("", "bpfgate-private-") // 0700: the workload cannot enter
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	exe := filepath.Join(dir, "tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\ntrue\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = launch.Start(launch.Config{Args: []string{exe}, Delegation: demoSet(t)})
	if err == nil || !strings.Contains(err.Error(), "readable and searchable by others") {
		t.Errorf("unreachable command: %v", err)
	}
}

// TestMountIntoForeignProcess mounts a delegated bpffs into a process that
// bpfgate did not start: a plain os/exec child in its own namespaces.
func TestMountIntoForeignProcess(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), workloadEnv+"=wait-cilium")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 300000, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	if err := launch.MountInto(cmd.Process.Pid, "/sys/fs/bpf", bpffs.Options{Delegation: demoSet(t)}); err != nil {
		t.Fatal(err)
	}
	ms, err := bpffs.MountsOf(cmd.Process.Pid, names(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms {
		found = found || (m.Path == "/sys/fs/bpf" && m.Delegation == names(t).Canonical(demoSet(t)) && m.UID == 300000)
	}
	if !found {
		t.Fatalf("no delegated bpffs owned by uid 300000 at /sys/fs/bpf in pid %d: %+v", cmd.Process.Pid, ms)
	}
	stdin.Write([]byte{'\n'})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("workload: %v\n%s", err, stderr.String())
	}
	var res map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err, stdout.String())
	}
	expect(t, res, map[string]string{"map/hash": "ok", "prog/socket_filter": "ok", "map/lru_hash": "EPERM"})

	// The host's user namespace is refused with a clear error.
	err = launch.MountInto(os.Getpid(), "/tmp", bpffs.Options{Delegation: demoSet(t)})
	if !errors.Is(err, launch.ErrSharedUserNS) {
		t.Errorf("own process: %v", err)
	}
}

// TestOwnerOfTheBPFFS: the workload's bpffs root belongs to whom Config.Owner
// says, as ids inside its user namespace.
func TestOwnerOfTheBPFFS(t *testing.T) {
	testutil.RequireRoot(t)
	uid, mode := uint32(1000), uint32(0o700)
	var stdout bytes.Buffer
	code, err := launch.Run(launch.Config{Args: []string{"stat", "-c", "%u %a", "/sys/fs/bpf"}, Delegation: demoSet(t),
		Owner: bpffs.Owner{UID: &uid, Mode: &mode}, Stdout: &stdout})
	if err != nil || code != 0 {
		t.Fatalf("code %d, %v", code, err)
	}
	if got := strings.TrimSpace(stdout.String()); got != "1000 1700" {
		t.Errorf("bpffs root: %q, want 1000 1700", got)
	}
}

// TestFaultsOnlyInTestBuilds: a release build's helpers ignore the fault
// variable, so nobody can make them die half way by setting it.
func TestFaultsOnlyInTestBuilds(t *testing.T) {
	testutil.RequireRoot(t)
	if nsexec.Faults {
		return // the bpfgate_faults build: faults_test.go tests them
	}
	code, err := launch.Run(launch.Config{Args: []string{"true"}, Delegation: demoSet(t),
		Env: append(os.Environ(), nsexec.EnvFault+"=fsopen")})
	if err != nil || code != 0 {
		t.Fatalf("with %s=fsopen set: code %d, %v", nsexec.EnvFault, code, err)
	}
}

// TestHostMountInPrivateDir: a host bpffs in a directory only root can
// search is out of the workload's reach, and does not stop the sandbox
// from starting (its covering step cannot see it either).
func TestHostMountInPrivateDir(t *testing.T) {
	testutil.RequireRoot(t)
	private, err := os.MkdirTemp("", "bpfgate-private-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(private)
	inner := filepath.Join(private, "bpf")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", inner, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(inner, unix.MNT_DETACH)
	code, err := launch.Run(launch.Config{Args: []string{"true"}, Delegation: demoSet(t)})
	if err != nil || code != 0 {
		t.Fatalf("with a bpffs at %s: code %d, %v", inner, code, err)
	}
}
