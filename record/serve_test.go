package record

// End-to-end tests: the test binary runs as a recorded workload under
// launch (as root) and makes bpf() calls, sane and hostile.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/recordbench"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// workloadEnv makes the test binary act as a workload.
const workloadEnv = "BPFGATE_RECORD_TEST_WORKLOAD"

func TestMain(m *testing.M) {
	launch.Init()
	if kind := os.Getenv(workloadEnv); kind != "" {
		os.Exit(workload(kind))
	}
	os.Exit(m.Run())
}

// bpf calls bpf(2) as a hostile workload may: any pointer, any size.
func bpf(cmd int, ptr uintptr, size uintptr) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), ptr, size)
	return e
}

func bpfAttr(cmd int, fields map[int]uint32) unix.Errno {
	b := attr(160, fields)
	e := bpf(cmd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	runtime.KeepAlive(b)
	return e
}

// workload runs the calls of kind and prints their errnos as JSON.
func workload(kind string) int {
	res := map[string]string{}
	errno := func(e unix.Errno) string {
		if e == 0 {
			return "ok"
		}
		return unix.ErrnoName(e)
	}
	switch kind {
	case "calls":
		// A token fd of -1: the kernel refuses the call, the record
		// still sees what was asked for.
		res["map_create hash token"] = errno(bpfAttr(cmdMapCreate, map[int]uint32{0: 1, 4: 4, 8: 4, 12: 1, 16: flagTokenFD, 76: ^uint32(0)}))
		res["prog_load socket_filter token"] = errno(bpfAttr(cmdProgLoad, map[int]uint32{0: 1, 44: flagTokenFD, 144: ^uint32(0)}))
		res["btf_load token"] = errno(bpfAttr(cmdBTFLoad, map[int]uint32{32: flagTokenFD, 36: ^uint32(0)}))
		res["map_create array"] = errno(bpfAttr(cmdMapCreate, map[int]uint32{0: 2, 4: 4, 8: 4, 12: 1}))
		res["link_create xdp"] = errno(bpfAttr(cmdLinkCreate, map[int]uint32{0: ^uint32(0), 4: 1, 8: 37}))
		res["prog_attach cgroup_inet_egress"] = errno(bpfAttr(cmdProgAttach, map[int]uint32{0: ^uint32(0), 4: ^uint32(0), 8: 1}))
		res["token_create"] = errno(bpfAttr(cmdTokenCreate, map[int]uint32{4: ^uint32(0)}))
		res["map_lookup_elem"] = errno(bpfAttr(1, map[int]uint32{0: ^uint32(0)}))
	case "garbage":
		page := unix.Getpagesize()
		mem, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		unix.Mprotect(mem[page:], unix.PROT_NONE)
		base := uintptr(unsafe.Pointer(&mem[0]))
		res["unmapped"] = errno(bpf(cmdMapCreate, 0x1000, AttrSize))
		res["null"] = errno(bpf(cmdMapCreate, 0, AttrSize))
		res["kernel address"] = errno(bpf(cmdProgLoad, 0xffffffff81000000, AttrSize))
		res["straddles a guard page"] = errno(bpf(cmdProgLoad, base+uintptr(page)-8, AttrSize))
		res["huge size"] = errno(bpf(cmdMapCreate, base, 1<<31))
		res["size beyond 32 bits"] = errno(bpf(cmdMapCreate, base, 1<<40|8))
		res["size 0"] = errno(bpf(cmdMapCreate, 0xdead0000, 0))
		res["cmd beyond 32 bits"] = errno(bpf(1<<32|cmdBTFLoad, base, AttrSize))
		// Still recorded after all that: a sane call.
		res["prog_load xdp token"] = errno(bpfAttr(cmdProgLoad, map[int]uint32{0: 6, 44: flagTokenFD, 68: 37, 144: ^uint32(0)}))
	case "flood":
		var wg sync.WaitGroup
		for th := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5000 {
					bpfAttr(cmdMapCreate, map[int]uint32{0: uint32(th*5000 + i), 16: flagTokenFD})
				}
			}()
		}
		wg.Wait()
		res["done"] = "ok"
	case "bench": // bench_test.go
		n, _ := strconv.Atoi(os.Getenv(benchEnv))
		res, err := recordbench.Workload(n, 1)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return 0
	case "late":
		// One call, then (once stdin closes) another, after the
		// recorder's caller has stopped waiting for it.
		res["first"] = errno(bpfAttr(cmdMapCreate, map[int]uint32{0: 1, 16: flagTokenFD}))
		fmt.Println("first done")
		os.Stdin.Read(make([]byte, 1))
		res["late"] = errno(bpfAttr(cmdMapCreate, map[int]uint32{0: 2, 16: flagTokenFD}))
	case "one":
		res["map_create"] = errno(bpfAttr(cmdMapCreate, map[int]uint32{0: 1, 16: flagTokenFD}))
	default:
		fmt.Fprintln(os.Stderr, "unknown workload", kind)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

type outcome struct {
	rec    *Record
	code   int
	report map[string]string
	stderr string
}

// run runs workload kind, recorded when record is set.
func run(t *testing.T, kind string, record bool, mutate func(*launch.Config)) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cfg := launch.Config{
		Args: []string{"/proc/self/exe"}, Env: append(os.Environ(), workloadEnv+"="+kind),
		Delegation: delegate.Set{Cmds: 1}, RecordBPF: record,
		Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	w, err := launch.Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", kind, err)
	}
	type served struct {
		rec *Record
		err error
	}
	done := make(chan served, 1)
	l := w.BPFListener()
	if record != (l != nil) {
		t.Fatalf("RecordBPF %v but listener %v", record, l)
	}
	if l != nil {
		defer l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go func() {
			rec, err := Serve(ctx, l)
			done <- served{rec, err}
		}()
	}
	code, err := w.Wait()
	if err != nil {
		t.Fatalf("wait %s: %v", kind, err)
	}
	out := outcome{code: code, stderr: stderr.String()}
	if l != nil {
		// Every task of the workload is gone: Serve must see it by itself.
		select {
		case s := <-done:
			if s.err != nil {
				t.Fatalf("serve: %v", s.err)
			}
			out.rec = s.rec
		case <-time.After(10 * time.Second):
			t.Fatalf("Serve still runs 10s after the workload %s ended", kind)
		}
	}
	if code == 0 {
		if err := json.Unmarshal(stdout.Bytes(), &out.report); err != nil {
			t.Fatalf("workload %s printed %q: %v (stderr %q)", kind, stdout.String(), err, stderr.String())
		}
	}
	return out
}

func TestServeRecordsCalls(t *testing.T) {
	testutil.RequireRoot(t)
	n, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, unixSockets := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow-unix-sockets=%v", unixSockets), func(t *testing.T) {
			opt := func(c *launch.Config) { c.AllowUnixSockets = unixSockets }
			plain := run(t, "calls", false, opt)
			got := run(t, "calls", true, opt)
			// CONTINUE: the calls fail or succeed as they do unrecorded.
			if fmt.Sprint(plain.report) != fmt.Sprint(got.report) {
				t.Errorf("recording changed the calls' results:\nplain    %v\nrecorded %v", plain.report, got.report)
			}
			want := delegate.Set{Cmds: 1<<cmdMapCreate | 1<<cmdProgLoad | 1<<cmdBTFLoad, Maps: 1 << 1, Progs: 1 << 1, Attachs: 1 << 0}
			if d := got.rec.Delegation(); d != want {
				t.Errorf("delegation %s, want %s", n.FormatOptions(d), n.FormatOptions(want))
			}
			nj := strings.Join(got.rec.NotJudged(n), "\n")
			if !strings.Contains(nj, "map_create array without a token: needs privilege a token cannot give") || strings.Count(nj, "\n") != 0 {
				t.Errorf("not judged:\n%s", nj)
			}
			if a := strings.Join(got.rec.Attachments(n), ","); a != "link_create xdp,prog_attach cgroup_inet_egress" {
				t.Errorf("attachments %q", a)
			}
			for c := range got.rec.Calls {
				if c.Cmd == 1 {
					t.Errorf("map_lookup_elem was notified: %+v", c)
				}
			}
			if got.rec.Notified != 7 || !got.rec.UsedToken() {
				t.Errorf("%d notifications, want 7: %+v", got.rec.Notified, got.rec)
			}
		})
	}
}

func TestServeGarbage(t *testing.T) {
	testutil.RequireRoot(t)
	n, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	plain := run(t, "garbage", false, nil)
	got := run(t, "garbage", true, nil)
	if got.code != 0 || fmt.Sprint(plain.report) != fmt.Sprint(got.report) {
		t.Fatalf("recording changed the calls' results:\nplain    %v\nrecorded %v (%s)", plain.report, got.report, got.stderr)
	}
	r := got.rec
	// unmapped, null, kernel address, guard page: unreadable.
	if r.Unreadable != 4 || r.Gone != 0 || r.Notified != 9 {
		t.Errorf("unreadable %d, gone %d, notified %d: %+v", r.Unreadable, r.Gone, r.Notified, r)
	}
	// The huge sizes were read as AttrSize bytes of zeroes; size 0 reads nothing.
	if r.Calls[Call{Cmd: cmdMapCreate, HasType: true}] != 3 {
		t.Errorf("map_create of zeroes: %v", r.Sorted())
	}
	if r.Calls[Call{Cmd: cmdBTFLoad}] != 1 {
		t.Errorf("the kernel takes the command as an int: %v", r.Sorted())
	}
	want := delegate.Set{Cmds: 1 << cmdProgLoad, Progs: 1 << 6, Attachs: 1 << 37}
	if d := r.Delegation(); d != want {
		t.Errorf("delegation %s, want %s", n.FormatOptions(d), n.FormatOptions(want))
	}
}

func TestServeFlood(t *testing.T) {
	testutil.RequireRoot(t)
	start := time.Now()
	got := run(t, "flood", true, nil)
	r := got.rec
	if got.code != 0 || r.Notified != 20000 {
		t.Fatalf("code %d, %d notifications: %s", got.code, r.Notified, got.stderr)
	}
	if len(r.Calls) != MaxDistinct || r.Overflow != 20000-MaxDistinct {
		t.Errorf("%d distinct calls kept, %d overflow", len(r.Calls), r.Overflow)
	}
	t.Logf("20000 recorded calls from 4 threads in %v", time.Since(start))
}

// TestServeTaskGone kills the caller after its attr was read: the call
// must not be recorded (its pid may already belong to another process),
// and Serve must neither fail nor hang.
func TestServeTaskGone(t *testing.T) {
	testutil.RequireRoot(t)
	testHookRead = func(pid uint32) {
		pidfd, err := unix.PidfdOpen(int(pid), 0)
		if err != nil {
			t.Errorf("pidfd of %d: %v", pid, err)
			return
		}
		defer unix.Close(pidfd)
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		// Wait until it is gone, so that the check below is not a race.
		unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 5000)
	}
	defer func() { testHookRead = nil }()
	got := run(t, "one", true, nil)
	if got.code != 128+int(unix.SIGKILL) {
		t.Errorf("exit code %d, want %d", got.code, 128+int(unix.SIGKILL))
	}
	if r := got.rec; r.Gone != 1 || len(r.Calls) != 0 {
		t.Errorf("gone %d, calls %v: a dead task's call was recorded", r.Gone, r.Sorted())
	}
}

// TestServeCancel: a cancelled Serve returns at once with what it has, even
// though the workload lives on; the calls the workload makes afterwards
// still continue (no hang, no ENOSYS), and the listener is released when
// the workload ends, although the caller closed it.
func TestServeCancel(t *testing.T) {
	testutil.RequireRoot(t)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	w, err := launch.Start(launch.Config{
		Args: []string{"/proc/self/exe"}, Env: append(os.Environ(), workloadEnv+"=late"),
		Delegation: delegate.Set{Cmds: 1}, RecordBPF: true, Stdin: stdinR, Stdout: outW,
	})
	stdinR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	l := w.BPFListener()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Record, 1)
	go func() {
		rec, err := Serve(ctx, l)
		if err != nil {
			t.Error(err)
		}
		done <- rec
	}()
	line := make([]byte, len("first done\n"))
	if _, err := io.ReadFull(outR, line); err != nil {
		t.Fatalf("workload: %v", err)
	}
	cancel()
	var rec *Record
	select {
	case rec = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5 s of its context being cancelled")
	}
	l.Close()
	if rec.Notified != 1 || len(rec.Calls) != 1 {
		t.Errorf("the snapshot has %d notifications, %v", rec.Notified, rec.Calls)
	}
	stdinW.Close() // the late call
	rest, _ := io.ReadAll(outR)
	code, err := w.Wait()
	if err != nil || code != 0 {
		t.Fatalf("workload: exit %d, %v", code, err)
	}
	var res map[string]string
	if err := json.Unmarshal(rest, &res); err != nil {
		t.Fatalf("%q: %v", rest, err)
	}
	// Token fd 0 is no token: EBADF or EINVAL from the kernel, not ENOSYS
	// (a call nobody answered).
	if res["late"] == "ENOSYS" || res["late"] == "" || res["late"] != res["first"] {
		t.Errorf("calls: %v", res)
	}
}
