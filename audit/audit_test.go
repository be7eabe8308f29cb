package audit_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/token"
)

const workloadEnv = "BPFGATE_AUDIT_TEST_WORKLOAD"

// compatTokenFD is where the workload in mode "compat" keeps its token.
const compatTokenFD = 100

// manyCalls is how many calls the workload makes in mode "many".
const manyCalls = 500

func TestMain(m *testing.M) {
	launch.Init()
	if os.Getenv(workloadEnv) != "" {
		os.Exit(workload())
	}
	os.Exit(m.Run())
}

// workload prints its user namespace, waits for a line on stdin, then makes
// the calls TestWorkload expects, in order.
func workload() int {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if os.Getenv(workloadEnv) == "compat" {
		// Holds a token at compatTokenFD for compat_bpf until its go.
		tok, err := token.Create("/sys/fs/bpf")
		if err == nil {
			err = unix.Dup2(tok.FD(), compatTokenFD)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		fmt.Println(st.Ino)
		bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	}
	fmt.Println(st.Ino)
	bufio.NewReader(os.Stdin).ReadString('\n')
	if os.Getenv(workloadEnv) == "highbits" {
		return highBits()
	}
	if os.Getenv(workloadEnv) == "flip" {
		return flipToken()
	}
	tok, err := token.Create("/sys/fs/bpf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer tok.Close()
	tfd := int32(tok.FD())
	mapCreate := func(typ, key, value uint32, token bool) (int, error) {
		a := sys.MapCreateAttr{MapType: typ, KeySize: key, ValueSize: value, MaxEntries: 4096}
		copy(a.MapName[:], "audit_test")
		if token {
			a.MapFlags, a.MapTokenFd = sys.BPF_F_TOKEN_FD, tfd
		}
		return sys.MapCreate(&a)
	}
	insns := []uint64{0xb7, 0x95} // r0 = 0; exit
	license := []byte("GPL\x00")
	progLoad := func(typ uint32) (int, error) {
		a := sys.ProgLoadAttr{ProgType: typ, InsnCnt: 2, Insns: uint64(uintptr(unsafe.Pointer(&insns[0]))),
			License: uint64(uintptr(unsafe.Pointer(&license[0]))), ProgFlags: sys.BPF_F_TOKEN_FD, ProgTokenFd: tfd}
		copy(a.ProgName[:], "audit_prog")
		return sys.ProgLoad(&a)
	}
	want := func(what string, fd int, err, wantErr error) bool {
		if fd > 0 {
			unix.Close(fd)
		}
		if !errors.Is(err, wantErr) && !(err == nil && wantErr == nil) {
			fmt.Fprintf(os.Stderr, "%s: %v, want %v\n", what, err, wantErr)
			return false
		}
		return true
	}
	if os.Getenv(workloadEnv) == "many" {
		for range manyCalls {
			if fd, err := mapCreate(27, 0, 0, true); !want("ringbuf", fd, err, unix.EPERM) {
				return 4
			}
		}
		return 0
	}
	fd, err := mapCreate(1, 4, 4, true) // hash
	ok := want("hash", fd, err, nil)
	fd, err = mapCreate(27, 0, 0, true) // ringbuf
	ok = want("ringbuf", fd, err, unix.EPERM) && ok
	fd, err = mapCreate(1, 4, 4, false)
	ok = want("hash without token", fd, err, unix.EPERM) && ok
	fd, err = progLoad(1) // socket_filter
	ok = want("socket_filter", fd, err, nil) && ok
	fd, err = progLoad(6) // xdp
	ok = want("xdp", fd, err, unix.EPERM) && ok
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if !ok {
		return 4
	}
	return 0
}

// highBits makes two map_create calls with the workload's token (a hash,
// which succeeds, and a ringbuf, which the delegation refuses) through the
// x86-64 ABI with bit 32 of the call number set: the kernel takes the call
// number as an int and ignores the upper half of rax, which stays in
// orig_ax.
func highBits() int {
	tok, err := token.Create("/sys/fs/bpf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer tok.Close()
	for _, c := range []struct {
		typ, key, value uint32
		want            error
	}{{1, 4, 4, nil}, {27, 0, 0, unix.EPERM}} {
		a := sys.MapCreateAttr{MapType: c.typ, KeySize: c.key, ValueSize: c.value, MaxEntries: 4096,
			MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok.FD())}
		copy(a.MapName[:], "audit_highbits")
		fd, _, errno := unix.Syscall(1<<32|unix.SYS_BPF, sys.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a))
		var err error
		if errno != 0 {
			err = errno
		} else {
			unix.Close(int(fd))
		}
		if !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			fmt.Fprintf(os.Stderr, "map type %d with bit 32 of the call number set: %v, want %v\n", c.typ, err, c.want)
			return 4
		}
	}
	return 0
}

// flipCalls is how many calls the workload makes at most in mode "flip",
// and flipMade how many maps it makes before it stops.
const flipCalls, flipMade = 5000, 300

// flipToken makes map_create calls of a hash with its token while
// another thread keeps setting and clearing BPF_F_TOKEN_FD in the attr:
// the kernel copies the attr at the start of each call, the tracer reads it
// again at the end. It writes how many calls made a map to the file named
// by $BPFGATE_AUDIT_TEST_OUT.
func flipToken() int {
	tok, err := token.Create("/sys/fs/bpf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer tok.Close()
	a := sys.MapCreateAttr{MapType: 1, KeySize: 4, ValueSize: 4, MaxEntries: 16,
		MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok.FD())}
	copy(a.MapName[:], "audit_flip")
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(done)
		// each state for about as long as a call takes
		spin := func() {
			for i := 0; i < 2000 && !stop.Load(); i++ {
			}
		}
		for !stop.Load() {
			atomic.StoreUint32(&a.MapFlags, 0)
			spin()
			atomic.StoreUint32(&a.MapFlags, sys.BPF_F_TOKEN_FD)
			spin()
		}
	}()
	made := 0
	for i := 0; i < flipCalls && made < flipMade; i++ {
		fd, _, errno := unix.Syscall(unix.SYS_BPF, sys.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a))
		if errno == 0 {
			made++
			unix.Close(int(fd))
		}
	}
	stop.Store(true)
	<-done
	if err := os.WriteFile(os.Getenv("BPFGATE_AUDIT_TEST_OUT"), []byte(strconv.Itoa(made)), 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	return 0
}

// demo is the demo profile's delegation.
func demo(t *testing.T) delegate.Set {
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	set, err := names.SetFlags("map_create,prog_load,btf_load", "hash,array", "socket_filter", "cgroup_inet_ingress")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// started is a workload waiting for its go.
type started struct {
	w      *launch.Workload
	userns uint32
	pid    uint32 // host pid of the command
	cgroup uint64
	goW    *os.File
}

// publicExe copies the test binary where the workload, an unprivileged
// host uid, can execute it.
func publicExe(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(testutil.PublicDir(t), "audit.test")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

func startWorkload(t *testing.T) *started { return startWorkloadMode(t, "1") }

func startWorkloadMode(t *testing.T, mode string) *started {
	t.Helper()
	exe := publicExe(t)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w, err := launch.Start(launch.Config{
		Args: []string{exe}, Env: append(os.Environ(), workloadEnv+"="+mode),
		Delegation: demo(t), Stdin: inR, Stdout: outW, Stderr: os.Stderr,
	})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := &started{w: w, goW: inW}
	t.Cleanup(func() { inW.Close(); w.Signal(syscall.SIGKILL); w.Wait() })
	line, err := bufio.NewReader(outR).ReadString('\n')
	outR.Close()
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	ns, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	s.userns = uint32(ns)
	var st unix.Stat_t
	if err := unix.Stat(w.Cgroup(), &st); err != nil {
		t.Fatal(err)
	}
	s.cgroup = st.Ino
	procs, err := os.ReadFile(w.Cgroup() + "/cgroup.procs")
	if err != nil {
		t.Fatal(err)
	}
	// The command is the only process in the cgroup that is in the
	// workload's user namespace and runs the test binary.
	for _, f := range strings.Fields(string(procs)) {
		pid, _ := strconv.Atoi(f)
		if exe2, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe2 == exe {
			s.pid = uint32(pid)
		}
	}
	return s
}

// run lets the workload make its calls and waits for it.
func (s *started) run(t *testing.T) {
	t.Helper()
	s.goW.WriteString("go\n")
	s.goW.Close()
	code, err := s.w.Wait()
	if err != nil || code != 0 {
		t.Fatalf("workload: exit %d, %v", code, err)
	}
}

func drain(t *testing.T, tr *audit.Tracer) []*audit.Event {
	t.Helper()
	var evs []*audit.Event
	if err := tr.Drain(func(e *audit.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return evs
}

func open(t *testing.T, opts audit.Options) *audit.Tracer {
	t.Helper()
	tr, err := audit.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestWorkload: a workload with the demo delegation makes two calls that
// succeed and three the kernel refuses; each is recorded once, with the
// types the kernel made or was asked for, the token, and the reason.
func TestWorkload(t *testing.T) {
	testutil.RequireRoot(t)
	for _, hook := range []audit.Hook{audit.HookTracepoint, audit.HookRawTracepoint} {
		t.Run(hook.String(), func(t *testing.T) {
			tr := open(t, audit.Options{Hook: hook})
			if tr.Hook() != hook {
				t.Fatalf("hook %v, want %v", tr.Hook(), hook)
			}
			s := startWorkload(t)
			s.run(t)
			var got []*audit.Event
			for _, e := range drain(t, tr) {
				if e.UserNS == s.userns {
					got = append(got, e)
				}
			}
			type row struct{ cmd, typ, outcome, reason string }
			want := []row{
				{"map_create", "hash", "ok", ""},
				{"map_create", "ringbuf", "denied", "map type ringbuf not delegated"},
				{"map_create", "hash", "denied", "no token"},
				{"prog_load", "socket_filter", "ok", ""},
				{"prog_load", "xdp", "denied", "program type xdp not delegated"},
			}
			if len(got) != len(want) {
				for _, e := range got {
					t.Logf("%+v", e)
				}
				t.Fatalf("%d events, want %d", len(got), len(want))
			}
			for i, w := range want {
				e := got[i]
				typ := e.MapType + e.ProgType
				if e.Cmd != w.cmd || typ != w.typ || e.Outcome != w.outcome || e.Reason != w.reason {
					t.Errorf("event %d: %s %s %s %q, want %+v", i, e.Cmd, typ, e.Outcome, e.Reason, w)
				}
				if e.Pid != s.pid || e.CgroupID != s.cgroup || e.Comm == "" || e.UID == 0 {
					t.Errorf("event %d: pid %d cgroup %d comm %q uid %d, want pid %d cgroup %d", i, e.Pid, e.CgroupID, e.Comm, e.UID, s.pid, s.cgroup)
				}
				if time.Since(e.Time) > time.Minute || time.Since(e.Time) < 0 {
					t.Errorf("event %d: time %v", i, e.Time)
				}
				if e.ABI != "" {
					t.Errorf("event %d: ABI %q on an x86-64 call", i, e.ABI)
				}
				if i == 2 {
					if e.Token != nil || e.Errno != "EPERM" {
						t.Errorf("no-token call: token %+v, errno %q", e.Token, e.Errno)
					}
					continue
				}
				if e.Token == nil || e.Token.UserNS != s.userns || strings.Join(e.Token.AllowedMaps, ":") != "hash:array" ||
					e.Token.FD < 3 || e.Token.BPFFSDev == "" || e.Token.BPFFSDev == "0:0" {
					t.Errorf("event %d: token %+v", i, e.Token)
				}
			}
			if got[0].MapID == 0 || got[0].Name != "audit_test" || got[3].ProgID == 0 || got[3].AttachType != "cgroup_inet_ingress" || got[1].MapID != 0 {
				t.Errorf("ids or names: %+v %+v %+v", got[0], got[1], got[3])
			}
			if n, err := tr.Dropped(); err != nil || n != 0 {
				t.Errorf("dropped %d, %v", n, err)
			}
		})
	}
}

// compatHelperEnv names a prebuilt testdata/compat_bpf (built with
// -static), for where there is no C compiler (test/kernels' VMs).
const compatHelperEnv = "BPFGATE_TEST_COMPAT_BPF"

// TestCompat: bpf(2) calls through the other ABIs, ia32 (int 0x80 from a
// 64-bit process, which a container's seccomp profile may allow) and x32
// (where the kernel takes them: test/kernels boots Debian's 6.12 with
// syscall.x32=y), made with a delegated workload's token in its user
// namespace, are recorded like 64-bit ones, with their ABI (and x32 ones
// where the kernel has no x32, as attempts in vain), by the raw tracepoint, which HookAuto picks where the kernel has such ABIs; the
// tracepoint hook says it does not see them.
func TestCompat(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/proc/sys/abi/vsyscall32"); err != nil {
		testutil.Skip(t, "no ia32 emulation: "+err.Error())
	}
	helper := os.Getenv(compatHelperEnv)
	if helper == "" {
		helper = filepath.Join(t.TempDir(), "compat_bpf")
		if out, err := exec.Command("cc", "-O2", "-o", helper, "testdata/compat_bpf.c").CombinedOutput(); err != nil {
			testutil.Skip(t, fmt.Sprintf("build testdata/compat_bpf.c (needs a C compiler): %v: %s", err, out))
		}
	}
	abis := audit.ABIs()
	x32 := slices.Contains(abis, audit.ABIX32)
	t.Logf("kernel ABIs: %v", abis)
	if !slices.Contains(abis, audit.ABIIA32) {
		t.Fatalf("ABIs() %v lacks ia32 on a kernel with /proc/sys/abi/vsyscall32", abis)
	}
	if tr := open(t, audit.Options{Hook: audit.HookTracepoint}); !slices.Equal(tr.ABIs(), []string{audit.ABIX8664}) {
		t.Errorf("the tracepoint hook claims to record %v", tr.ABIs())
	}
	for _, hook := range []audit.Hook{audit.HookAuto, audit.HookRawTracepoint} {
		t.Run(hook.String(), func(t *testing.T) {
			tr := open(t, audit.Options{Hook: hook})
			if !slices.Equal(tr.ABIs(), abis) || tr.Hook() != audit.HookRawTracepoint {
				t.Fatalf("hook %v records %v on a kernel with %v", tr.Hook(), tr.ABIs(), abis)
			}
			s := startWorkloadMode(t, "compat")
			out, err := exec.Command(helper, strconv.Itoa(int(s.pid)), strconv.Itoa(compatTokenFD)).CombinedOutput()
			if err != nil {
				t.Fatalf("compat_bpf: %v: %s", err, out)
			}
			// An fd and -EPERM through ia32; through x32 the same, or
			// -ENOSYS twice where the kernel has no x32.
			rets := strings.Fields(string(out))
			if len(rets) != 4 || rets[0] == "-1" || rets[1] != "-1" {
				t.Fatalf("compat_bpf returned %q, want an fd and -1 (EPERM) through ia32", rets)
			}
			if x32 != (rets[2] != "-38") || (x32 && (strings.HasPrefix(rets[2], "-") || rets[3] != "-1")) {
				t.Fatalf("compat_bpf returned %q through x32, on a kernel whose ABIs are %v", rets[2:], abis)
			}
			s.run(t)
			var got []*audit.Event
			for _, e := range drain(t, tr) {
				if e.UserNS == s.userns {
					got = append(got, e)
				}
			}
			type row struct {
				abi, typ, outcome, reason string
			}
			want := []row{{"ia32", "hash", "ok", ""}, {"ia32", "ringbuf", "denied", "map type ringbuf not delegated"}}
			if x32 {
				want = append(want, row{"x32", "hash", "ok", ""}, row{"x32", "ringbuf", "denied", "map type ringbuf not delegated"})
			} else {
				// Attempts still: recorded, and said to be in vain.
				no := "the kernel takes no x32 system calls"
				want = append(want, row{"x32", "hash", "failed", no}, row{"x32", "ringbuf", "failed", no})
			}
			if len(got) != len(want) {
				for _, e := range got {
					t.Logf("%+v", e)
				}
				t.Fatalf("%d events, want %d", len(got), len(want))
			}
			for i, w := range want {
				e := got[i]
				if e.ABI != w.abi || e.Cmd != "map_create" || e.MapType != w.typ || e.Outcome != w.outcome || e.Reason != w.reason ||
					e.Name != "audit_compat" || e.Token == nil || e.Token.UserNS != s.userns || e.Token.FD < 0 {
					t.Errorf("event %d: %+v (token %+v), want map_create %+v", i, e, e.Token, w)
				}
				if w.outcome == "ok" && e.MapID == 0 {
					t.Errorf("event %d: no map id", i)
				}
				j, err := json.Marshal(e)
				if err != nil || !strings.Contains(string(j), `"abi":"`+w.abi+`"`) {
					t.Errorf("event %d: JSON %s, %v: no \"abi\":%q", i, j, err, w.abi)
				}
			}
			if x32 {
				t.Log("x32 calls recorded")
			}
		})
	}
}

// TestHighBits: a 64-bit bpf(2) call whose number has bits set above the
// low 32 (which the kernel ignores: it takes the number as an int) is
// recorded by every hook, as the same call without them would be.
func TestHighBits(t *testing.T) {
	testutil.RequireRoot(t)
	for _, hook := range []audit.Hook{audit.HookTracepoint, audit.HookRawTracepoint} {
		t.Run(hook.String(), func(t *testing.T) {
			tr := open(t, audit.Options{Hook: hook})
			s := startWorkloadMode(t, "highbits")
			s.run(t)
			var got []*audit.Event
			for _, e := range drain(t, tr) {
				if e.UserNS == s.userns {
					got = append(got, e)
				}
			}
			if len(got) != 2 {
				t.Fatalf("%d events of the workload's 2 calls with bit 32 of the call number set: %+v", len(got), got)
			}
			for i, w := range []struct{ typ, outcome string }{{"hash", "ok"}, {"ringbuf", "denied"}} {
				if e := got[i]; e.Cmd != "map_create" || e.MapType != w.typ || e.Outcome != w.outcome || e.ABI != "" {
					t.Errorf("event %d: %+v, want map_create of a %s, %s, x86-64", i, e, w.typ, w.outcome)
				}
			}
		})
	}
}

// TestFlipToken: a workload cannot hide a map it made with its token by
// clearing BPF_F_TOKEN_FD in the attr while the call runs (the tracer reads
// the attr at exit): every call that made an object in the workload's user
// namespace is recorded.
func TestFlipToken(t *testing.T) {
	testutil.RequireRoot(t)
	for _, hook := range []audit.Hook{audit.HookTracepoint, audit.HookRawTracepoint} {
		t.Run(hook.String(), func(t *testing.T) {
			// room for every call's record: the refused ones are recorded too
			tr := open(t, audit.Options{Hook: hook, RingSize: 8 << 20})
			out := filepath.Join(testutil.PublicDir(t), "made")
			// the workload's uid is not root's: it writes a file root made
			if err := os.WriteFile(out, nil, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(out, 0o666); err != nil {
				t.Fatal(err)
			}
			t.Setenv("BPFGATE_AUDIT_TEST_OUT", out)
			s := startWorkloadMode(t, "flip")
			s.run(t)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			made, _ := strconv.Atoi(string(b))
			ok := 0
			for _, e := range drain(t, tr) {
				if e.UserNS == s.userns && e.Outcome == audit.OutcomeOK && e.Cmd == "map_create" && e.MapID != 0 {
					ok++
				}
			}
			t.Logf("the workload made %d maps", made)
			if made == 0 || ok != made {
				t.Errorf("%d maps recorded as made, the workload made %d", ok, made)
			}
		})
	}
}

// TestFilters: each filter keeps the workload's calls when it names the
// workload, and none when it names something else.
func TestFilters(t *testing.T) {
	testutil.RequireRoot(t)
	s := startWorkload(t)
	tracers := map[string]*audit.Tracer{}
	want := map[string]int{}
	for name, c := range map[string]struct {
		f audit.Filter
		n int
	}{
		"userns":       {audit.Filter{UserNS: s.userns}, 5},
		"other userns": {audit.Filter{UserNS: s.userns + 1}, 0},
		"pid":          {audit.Filter{Pid: s.pid}, 5},
		"other pid":    {audit.Filter{Pid: uint32(os.Getpid())}, 0},
		"cgroup":       {audit.Filter{CgroupID: s.cgroup}, 5},
		"other cgroup": {audit.Filter{CgroupID: s.cgroup + 1}, 0},
		"all three":    {audit.Filter{UserNS: s.userns, Pid: s.pid, CgroupID: s.cgroup}, 5},
	} {
		// Each filter set after Open, as bpfgate run does once it knows
		// the workload.
		tr := open(t, audit.Options{Filter: audit.Filter{Pid: 1}})
		if err := tr.SetFilter(c.f); err != nil {
			t.Fatal(err)
		}
		tracers[name], want[name] = tr, c.n
	}
	if s.pid == 0 {
		t.Fatal("workload pid not found")
	}
	s.run(t)
	for name, tr := range tracers {
		if n := len(drain(t, tr)); n != want[name] {
			t.Errorf("%s: %d events, want %d", name, n, want[name])
		}
	}
}

// TestClose: Close detaches and frees everything the tracer made (its
// program, link, maps and fds), and a Read waiting in another goroutine
// returns ErrClosed.
func TestClose(t *testing.T) {
	testutil.RequireRoot(t)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	tr, err := audit.Open(audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	progs, lnks, maps, err := tr.IDs()
	if err != nil || len(progs) != 1 || len(lnks) != 1 || len(maps) != 3 {
		t.Fatalf("ids %v %v %v: %v", progs, lnks, maps, err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := tr.Read()
		read <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if !errors.Is(err, audit.ErrClosed) {
			t.Errorf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waits after Close")
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := fds(); n != before {
		t.Errorf("%d fds open, %d before Open", n, before)
	}
	// The kernel frees objects once their last reference is gone, after an
	// RCU grace period.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := []string{}
		for _, id := range lnks {
			if l, err := link.NewFromID(id); err == nil {
				l.Close()
				left = append(left, fmt.Sprintf("link %d", id))
			}
		}
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				p.Close()
				left = append(left, fmt.Sprintf("program %d", id))
			}
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				left = append(left, fmt.Sprintf("map %d", id))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after Close: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDropped: a ring buffer too small for the workload's calls drops
// some, and every call is either read or counted as dropped.
func TestDropped(t *testing.T) {
	testutil.RequireRoot(t)
	tr := open(t, audit.Options{RingSize: os.Getpagesize()})
	s := startWorkloadMode(t, "many")
	if err := tr.SetFilter(audit.Filter{UserNS: s.userns}); err != nil {
		t.Fatal(err)
	}
	s.run(t)
	n := len(drain(t, tr))
	dropped, err := tr.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 || n == 0 || n+int(dropped) != manyCalls {
		t.Errorf("%d events read, %d dropped, want %d in all, some dropped", n, dropped, manyCalls)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, o := range []audit.Options{{RingSize: 3000}, {RingSize: 1}, {Hook: 9}} {
		if tr, err := audit.Open(o); err == nil {
			tr.Close()
			t.Errorf("%+v: no error", o)
		}
	}
}
