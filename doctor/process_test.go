package doctor_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/doctor"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

const (
	holdEnv    = "BPFGATE_DOCTOR_TEST_HOLD"
	seccompEnv = "BPFGATE_DOCTOR_TEST_SECCOMP"
)

// loadArg makes the test binary a workload that creates a map with a token
// from /sys/fs/bpf.
const loadArg = "load-with-token"

func TestMain(m *testing.M) {
	launch.Init()
	switch {
	case len(os.Args) == 2 && os.Args[1] == loadArg:
		if err := loadWithToken(); err != nil {
			os.Stderr.WriteString(loadArg + ": " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	case os.Getenv(holdEnv) != "":
		err := doctor.Hold(os.Args[1:])
		os.Stderr.WriteString("hold: " + err.Error() + "\n")
		os.Exit(127)
	case os.Getenv(seccompEnv) != "":
		denyBPF()
		os.Stdout.WriteString("ready\n")
		bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func loadWithToken() error {
	root, err := unix.Open(delegate.DefaultPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	tok, err := sys.TokenCreate(root)
	if err != nil {
		return err
	}
	fd, err := sys.MapCreate(&sys.MapCreateAttr{MapType: unix.BPF_MAP_TYPE_HASH, KeySize: 4, ValueSize: 4,
		MaxEntries: 1, MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok)})
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// denyBPF installs, on every thread, a filter that fails bpf(2) with EPERM.
func denyBPF() {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_BPF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		panic(err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		panic(e)
	}
}

func names(t *testing.T) *delegate.Names {
	t.Helper()
	n, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func deleg(t *testing.T, cmds, maps, progs, attachs string) delegate.Set {
	t.Helper()
	s, err := names(t).SetFlags(cmds, maps, progs, attachs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func status(t *testing.T, r *doctor.Report, check string) doctor.Finding {
	t.Helper()
	f, ok := r.Find(check)
	if !ok {
		t.Fatalf("no %s finding in\n%s", check, r)
	}
	return f
}

func expect(t *testing.T, r *doctor.Report, check string, want doctor.Status, says ...string) {
	t.Helper()
	f := status(t, r, check)
	if f.Status != want {
		t.Errorf("%s: %s, want %s: %s (fix: %s)", check, f.Status, want, f.Seen, f.Fix)
	}
	for _, s := range says {
		if !strings.Contains(f.Seen+" "+f.Fix, s) {
			t.Errorf("%s: %q does not say %q", check, f.Seen+" fix: "+f.Fix, s)
		}
	}
}

// runDoctor runs args under doctor.RunCommand, held by this test binary.
func runDoctor(t *testing.T, cfg launch.Config) (*doctor.Report, int) {
	t.Helper()
	testutil.RequireRoot(t)
	cfg.Env = append(os.Environ(), holdEnv+"=1")
	var stderr strings.Builder
	cfg.Stderr = &stderr
	r, code, err := doctor.RunCommand(cfg, []string{"/proc/self/exe"}, doctor.Options{})
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr.String())
	}
	return r, code
}

// TestRunCommandAllGood: a sandbox with the demo delegation passes every
// check, its seccomp filter read from the workload itself, and the command
// creates a map with its token whatever unprivileged_bpf_disabled says.
func TestRunCommandAllGood(t *testing.T) {
	r, code := runDoctor(t, launch.Config{Args: []string{"/proc/self/exe", loadArg},
		Delegation: deleg(t, "map_create,prog_load,btf_load", "hash,array", "socket_filter", "cgroup_inet_ingress")})
	if code != 0 || r.Failed() || r.Pid == 0 {
		t.Fatalf("code %d, pid %d:\n%s", code, r.Pid, r)
	}
	for _, c := range []string{doctor.CheckKernel, doctor.CheckBPFFS, doctor.CheckToken, doctor.CheckCaps,
		doctor.CheckUserNS, doctor.CheckSeccomp, doctor.CheckSocketFilter, doctor.CheckPerf, doctor.CheckCommand} {
		expect(t, r, c, doctor.OK)
	}
	// Its own filter lets bpf(2) through; the recorder's notifies.
	expect(t, r, doctor.CheckSeccomp, doctor.OK, "2 filter(s), read from the process", "bpfgate's own recorder")
	// The map it made was recorded, and delegated.
	expect(t, r, doctor.CheckGap, doctor.OK, "everything used was delegated")
	expect(t, r, doctor.CheckBPFFS, doctor.OK, "/sys/fs/bpf: delegate_cmds=map_create:prog_load:btf_load")
	// The sysctl does not matter to token users: with unprivileged BPF off
	// (as on this machine kind), the command made its map all the same.
	expect(t, r, doctor.CheckUnprivileged, doctor.OK, "does not matter to token users")
	if v, _ := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled"); strings.TrimSpace(string(v)) == "0" {
		t.Log("unprivileged BPF is on here: the claim about the sysctl was not put to the test")
	}
	var order []string
	for _, f := range r.Findings {
		order = append(order, f.Check)
	}
	want := []string{"kernel", "unprivileged_bpf_disabled", "lockdown", "bpffs", "token", "capabilities",
		"user_namespace", "seccomp", "cgroup_v2", "socket_filter_probe", "perf_events", "delegation_gap", "command"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("order: %v", order)
	}
}

// TestRunCommandFindsTheCause: sandboxes that each lack one thing.
func TestRunCommandFindsTheCause(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    launch.Config
		check  string
		status doctor.Status
		says   []string
		code   int
	}{
		{"without CAP_BPF", launch.Config{Args: []string{"true"}, Caps: []delegate.Cap{unix.CAP_CHOWN},
			Delegation: deleg(t, "map_create", "hash", "", "")},
			doctor.CheckCaps, doctor.Fail, []string{"not even in its bounding set: CAP_BPF", "bpfgate run"}, 0},
		{"libbpf without its socket filter probe", launch.Config{Args: []string{"sh", "-c", "echo 'libbpf: Error: fd 7 is not pointing to valid bpf_map' >&2; exit 4"},
			Delegation: deleg(t, "map_create,prog_load", "array", "xdp", "xdp")},
			doctor.CheckSocketFilter, doctor.Warn, []string{"--progs socket_filter --attachs cgroup_inet_ingress"}, 4},
		{"socket filters without their attach type", launch.Config{Args: []string{"true"},
			Delegation: deleg(t, "map_create,prog_load", "array", "socket_filter", "")},
			doctor.CheckSocketFilter, doctor.Fail, []string{"--attachs cgroup_inet_ingress"}, 0},
		{"kprobes", launch.Config{Args: []string{"true"},
			Delegation: deleg(t, "prog_load", "perf_event_array", "kprobe,socket_filter", "cgroup_inet_ingress")},
			doctor.CheckPerf, doctor.Warn, []string{"kprobe, perf_event_array", "raw_tp"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, code := runDoctor(t, tc.cfg)
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			expect(t, r, tc.check, tc.status, tc.says...)
			if tc.code != 0 {
				expect(t, r, doctor.CheckCommand, doctor.Fail, "exited 4", "not pointing to valid bpf_map", doctor.CheckSocketFilter)
			}
		})
	}
}

// TestCheckProcessPlainBPFFS: a process in a user namespace of its own that
// sees only a bpffs without delegate_* options: no token, and doctor says
// so at the bpffs.
func TestCheckProcessPlainBPFFS(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		testutil.Skip(t, "no unshare(1)")
	}
	dir := testutil.PublicDir(t)
	// The process names its mounts: an escape sequence must not reach a
	// terminal through the report.
	mnt := filepath.Join(dir, "bpf\x1b[2Jred")
	os.Mkdir(mnt, 0o755)
	// A mount namespace of its own without the host's bpffs mounts (other
	// tests make some), a plain bpffs, then a user namespace of its own.
	script := `grep ' - bpf ' /proc/self/mountinfo | cut -d' ' -f5 | xargs -r umount -l
mount -t bpf bpf "$1" && echo ready && exec unshare -U -r sh -c 'read x'`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", mnt)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("%q %v", line, err)
	}
	// The shell execs unshare, which execs sh: wait for the user namespace.
	pid := cmd.Process.Pid
	for i := 0; ; i++ {
		if a, b := nsOf(t, pid), nsOf(t, os.Getpid()); a != b {
			break
		}
		if i > 500 {
			t.Fatal("no user namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r, err := doctor.CheckProcess(pid, doctor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, r, doctor.CheckBPFFS, doctor.Fail, strconv.Quote(mnt)+": nothing delegated", "no bpffs it sees delegates anything", "bpfgate run --profile")
	if strings.Contains(r.String(), "\x1b") {
		t.Errorf("the report carries the escape sequence: %q", r.String())
	}
	expect(t, r, doctor.CheckToken, doctor.Fail, "no delegated bpffs")
	expect(t, r, doctor.CheckUserNS, doctor.OK)
	if !r.Failed() {
		t.Error("the report does not fail")
	}
}

func nsOf(t *testing.T, pid int) string {
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestCheckProcessSeccomp: a process whose seccomp filter fails bpf(2) is
// found out from the filter itself, and is left running, untraced.
func TestCheckProcessSeccomp(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), seccompEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("%q %v", line, err)
	}
	r, err := doctor.CheckProcess(cmd.Process.Pid, doctor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, r, doctor.CheckSeccomp, doctor.Fail, "bpf(2) would fail with EPERM", "let bpf(2) through")
	expect(t, r, doctor.CheckUserNS, doctor.Fail, "shares the host's user namespace")
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if !strings.Contains(string(st), "TracerPid:\t0\n") {
		t.Errorf("left traced:\n%s", st)
	}
}

func TestCheckProcessGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := doctor.CheckProcess(cmd.Process.Pid, doctor.Options{}); err == nil {
		t.Error("no error for an exited process")
	}
	if _, err := doctor.CheckProcess(-1, doctor.Options{}); err == nil {
		t.Error("no error for pid -1")
	}
}

// TestCheckProcessForeignBPFFS: a process that sees a delegated bpffs
// another user namespace owns (it joined a sandbox's mount namespace, then
// made a user namespace of its own) cannot make a token from it: the kernel,
// asked from the process's namespace, says so.
func TestCheckProcessForeignBPFFS(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		testutil.Skip(t, "no nsenter(1)")
	}
	w, err := launch.Start(launch.Config{Args: []string{"sleep", "60"},
		Delegation: deleg(t, "map_create,prog_load,btf_load", "hash", "socket_filter", "cgroup_inet_ingress")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		w.Signal(unix.SIGKILL)
		w.Wait()
	}()
	procs, err := os.ReadFile(filepath.Join(w.Cgroup(), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	wpid := strings.Fields(string(procs))[0]
	// No id map: writing one needs /proc/self, and the sandbox's /proc is
	// of its PID namespace.
	cmd := exec.Command("nsenter", "-t", wpid, "-m", "unshare", "-U", "sh", "-c", "echo ready; read x")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("%q %v", line, err)
	}
	r, err := doctor.CheckProcess(cmd.Process.Pid, doctor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, r, doctor.CheckBPFFS, doctor.OK, "/sys/fs/bpf: delegate_cmds=map_create:prog_load:btf_load")
	expect(t, r, doctor.CheckUserNS, doctor.OK)
	expect(t, r, doctor.CheckToken, doctor.Fail, "/sys/fs/bpf belongs to another user namespace: BPF_TOKEN_CREATE fails with EPERM")
}
