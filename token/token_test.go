package token_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/token"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	launch.Init()
	if os.Getenv("BPFGATE_TEST_TOKEN_WORKLOAD") != "" {
		os.Exit(workload())
	}
	os.Exit(m.Run())
}

type report struct {
	ObjInfo, FDInfo delegate.Set
	Source          string
	FindPath        string
	FindErr         string
	Probe           token.Report
	// Collected: a token nobody closed had its fd closed by the GC.
	Collected bool
}

// workload runs inside bpfgate's namespaces and reports what it sees.
func workload() int {
	var r report
	t, err := token.Create("/sys/fs/bpf")
	if err != nil {
		os.Stderr.WriteString(err.Error())
		return 1
	}
	info, err := t.Info()
	if err != nil {
		os.Stderr.WriteString(err.Error())
		return 1
	}
	r.ObjInfo, r.Source = info.Allowed, info.Source
	if r.FDInfo, err = t.FDInfo(); err != nil {
		os.Stderr.WriteString(err.Error())
		return 1
	}
	t.Close()
	// libbpf's rules: the default path works here.
	if ft, found, err := token.Find(""); err == nil && ft != nil {
		r.FindPath = found.Path
		ft.Close()
	}
	os.Setenv(token.PathEnv, "/nonexistent")
	if _, _, err := token.Find(""); err != nil {
		r.FindErr = err.Error()
	}
	names, _ := delegate.KernelNames()
	r.Probe = token.Probe(nil, names) // without a token: everything denied
	r.Collected = tokenCollected()
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// tokenCollected makes a token, drops it unclosed and reports whether the
// garbage collector closed its fd.
func tokenCollected() bool {
	lost, err := token.Create("/sys/fs/bpf")
	if err != nil {
		return false
	}
	fd := lost.FD()
	lost = nil
	for range 10 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return true
		}
	}
	return false
}

func TestTokenInfoAndFind(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	set, err := names.SetFlags("map_create:prog_load:btf_load", "hash:ringbuf", "xdp:kprobe", "xdp:cgroup_inet_ingress")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code, err := launch.Run(launch.Config{Args: []string{"/proc/self/exe"}, Delegation: set,
		Env: append(os.Environ(), "BPFGATE_TEST_TOKEN_WORKLOAD=1"), Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("%d %v %s", code, err, errb.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err, out.String())
	}
	if r.ObjInfo != set || r.FDInfo != set {
		t.Fatalf("token allows obj_info %+v, fdinfo %+v; mounted %+v", r.ObjInfo, r.FDInfo, set)
	}
	if r.FindPath != delegate.DefaultPath {
		t.Errorf("Find: default path not used: %q", r.FindPath)
	}
	if !r.Collected {
		t.Errorf("a token nobody closed kept its fd after garbage collection")
	}
	if r.FindErr == "" {
		t.Errorf("Find: a bad %s must be an error", token.PathEnv)
	}
	for _, res := range append(r.Probe.Maps, r.Probe.Progs...) {
		if res.Outcome == token.Works {
			t.Errorf("without a token %s %s works", res.Kind, res.Type)
		}
	}
}

func TestParseFDInfo(t *testing.T) {
	s, err := token.ParseFDInfo([]byte("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1\nallowed_cmds:\tany\nallowed_maps:\t0x6\nallowed_progs:\t0x2\nallowed_attachs:\t0x1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (delegate.Set{Cmds: ^uint64(0), Maps: 6, Progs: 2, Attachs: 1}); s != want {
		t.Fatalf("got %+v", s)
	}
	if _, err := token.ParseFDInfo([]byte("pos:\t0\n")); err == nil {
		t.Fatal("no allowed_* lines must be an error")
	}
	if _, err := token.ParseFDInfo([]byte("allowed_cmds:\tzz\n")); err == nil {
		t.Fatal("bad mask must be an error")
	}
}

func TestCreateErrors(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if _, err := token.Create(dir); !errors.Is(err, token.ErrNotBPFFSRoot) {
		t.Errorf("not a bpffs: %v", err)
	}
	if _, err := token.Create(dir + "/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// TestProbeTriesTracingAndLSM: tracing and lsm programs are loaded against a
// real kernel function (their BTF attach target), not skipped; ext and
// struct_ops, which need a program or a kernel type to extend, say so.
func TestProbeTriesTracingAndLSM(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	r := token.Probe(nil, names)
	got := map[string]token.Result{}
	for _, res := range r.Progs {
		got[res.Type] = res
	}
	for typ, attach := range map[string]string{"tracing": "trace_fentry", "lsm": "lsm_mac"} {
		res := got[typ]
		if res.Outcome == token.NotProbed || res.Attach != attach {
			t.Errorf("%s: %+v, want a load against a kernel function with attach type %s", typ, res, attach)
		}
	}
	for typ, why := range map[string]string{"ext": "another loaded program", "struct_ops": "struct_ops type"} {
		res := got[typ]
		if res.Outcome != token.NotProbed || !strings.Contains(res.Error, why) {
			t.Errorf("%s: %+v, want %q saying what it needs", typ, res, token.NotProbed)
		}
	}
}
