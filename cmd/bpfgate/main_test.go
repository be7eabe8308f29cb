package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/idpool"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// asBPFGate makes the test binary behave as the bpfgate command, so that the
// tests run the real CLI, and workloads can run it again as /proc/self/exe.
const asBPFGate = "BPFGATE_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	launch.Init()
	if os.Getenv(asBPFGate) != "" {
		os.Exit(execute(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

func bpfgate(t *testing.T, args ...string) result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

func TestCheck(t *testing.T) {
	r := bpfgate(t, "check", "--profile", "demo")
	want := "delegate_cmds=map_create:prog_load:btf_load,delegate_maps=hash:array,delegate_progs=socket_filter,delegate_attachs=cgroup_inet_ingress\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("check demo: %+v", r)
	}
	r = bpfgate(t, "check", "--progs", "socket_fltr")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown program type "socket_fltr"; did you mean socket_filter?`) {
		t.Fatalf("typo: %+v", r)
	}
	r = bpfgate(t, "check", "--options", "delegate_cmds=prog_load", "--progs", "socket_filter")
	if !strings.Contains(r.stdout, "warning: program type socket_filter is delegated without attach type cgroup_inet_ingress") {
		t.Fatalf("trap not reported: %+v", r)
	}
	r = bpfgate(t, "check", "--cmds", "prog_load:0x1")
	if !strings.Contains(r.stderr, "replace the values listed before it") || !strings.HasPrefix(r.stdout, "delegate_cmds=map_create:prog_load") {
		t.Fatalf("kernel quirk: %+v", r)
	}
}

func TestNamesAndProfiles(t *testing.T) {
	r := bpfgate(t, "names", "progs", "--json")
	var names map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &names); err != nil || !strings.Contains(r.stdout, `"socket_filter"`) {
		t.Fatalf("names: %v %+v", err, r)
	}
	r = bpfgate(t, "profiles")
	for _, p := range []string{"demo", "net", "trace"} {
		if !strings.Contains(r.stdout, p+" (builtin)") {
			t.Errorf("profiles lacks %s: %s", p, r.stdout)
		}
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte("profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hsah]\n"), 0o644)
	r = bpfgate(t, "--config", cfg, "profiles")
	if r.code != 1 || !strings.Contains(r.stderr, "config.yaml:4: profiles.counter.maps") {
		t.Fatalf("bad config: %+v", r)
	}
	os.WriteFile(cfg, []byte("profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hash]\n    audit: /var/log/bpfgate/audit\n    k8s_namespaces: [monitoring]\n"), 0o644)
	r = bpfgate(t, "--config", cfg, "profiles", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"audit":"/var/log/bpfgate/audit","k8s_namespaces":["monitoring"]`) {
		t.Errorf("profiles --json does not show the profile's audit directory and namespaces: %+v", r)
	}
	r = bpfgate(t, "--config", cfg, "profiles")
	if r.code != 0 || !strings.Contains(r.stdout, "audit: the OCI hook records its containers in /var/log/bpfgate/audit") ||
		!strings.Contains(r.stdout, "Kubernetes: pods of the namespaces monitoring only") {
		t.Errorf("profiles does not show the profile's audit directory and namespaces: %+v", r)
	}
	r = bpfgate(t, "run", "--profile", "nope", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown profile "nope" (known: demo, net, trace)`) {
		t.Fatalf("unknown profile: %+v", r)
	}
	r = bpfgate(t, "run", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "nothing to delegate") {
		t.Fatalf("empty delegation: %+v", r)
	}
}

// TestRunProbe is the README's main job: an unprivileged workload probes
// what its token allows.
func TestRunProbe(t *testing.T) {
	testutil.RequireRoot(t)
	r := bpfgate(t, "run", "--profile", "demo", "--", "/proc/self/exe", "token", "probe", "--json")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var rep struct {
		Token bool   `json:"token"`
		BTF   string `json:"btf_load"`
		Maps  []struct{ Type, Outcome string }
		Progs []struct{ Type, Outcome string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err, r.stdout)
	}
	got := map[string]string{"btf": rep.BTF}
	for _, m := range rep.Maps {
		got["map/"+m.Type] = m.Outcome
	}
	for _, p := range rep.Progs {
		got["prog/"+p.Type] = p.Outcome
	}
	for k, v := range map[string]string{"btf": "ok", "map/hash": "ok", "map/array": "ok", "map/lru_hash": "denied",
		"prog/socket_filter": "ok", "prog/xdp": "denied", "prog/kprobe": "denied"} {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if !rep.Token {
		t.Error("no token used")
	}
}

func TestRunTokenShow(t *testing.T) {
	testutil.RequireRoot(t)
	r := bpfgate(t, "run", "--profile", "demo", "--", "/proc/self/exe", "token", "show", "--json", "/sys/fs/bpf")
	var views []tokenShowJSON
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
	v := views[0]
	if v.Token == nil || v.Token.Source != "obj_info" && v.Token.Source != "fdinfo" {
		t.Fatalf("no token info: %+v", v)
	}
	if strings.Join(v.Token.Progs, ",") != "socket_filter" || v.UID < idpool.DefaultStart {
		t.Fatalf("token view (want the owner from the id pool): %+v", v)
	}
	if v.Token.Options != v.Options {
		t.Fatalf("token %q and mount %q disagree", v.Token.Options, v.Options)
	}
}

func TestRunPassesStatusAndSignals(t *testing.T) {
	testutil.RequireRoot(t)
	if r := bpfgate(t, "run", "-q", "--profile", "demo", "--", "sh", "-c", "exit 5"); r.code != 5 {
		t.Fatalf("exit status: %+v", r)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "run", "--profile", "demo", "--", "sleep", "30")
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let it reach the workload
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// TestMountOnHost mounts a bpffs here: delegation without --pid is refused
// (no token can ever come of it), and so is a second mount on the same root.
func TestMountOnHost(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	mounts := func() int {
		t.Helper()
		ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) { return m.Mountpoint != dir, false })
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	for _, args := range [][]string{{"--cmds", "map_create"}, {"--profile", "demo"}, {"--maps", "hash", "--uid", "100000"}} {
		r := bpfgate(t, append([]string{"mount", dir}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "need --pid") || !strings.Contains(r.stderr, "bpfgate run") ||
			!strings.Contains(r.stderr, "mount --pid") {
			t.Errorf("mount %v on the host: %+v, want a refusal naming bpfgate run and mount --pid", args, r)
		}
		if n := mounts(); n != 0 {
			t.Fatalf("mount %v: refused, but %d mounts on %s", args, n, dir)
		}
	}
	r := bpfgate(t, "mount", dir, "--mode", "0700", "--uid", "100000")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	defer bpffs.Unmount(dir)
	for _, path := range []string{dir, dir + "/", dir + "/."} {
		r = bpfgate(t, "mount", path, "--mode", "0755")
		if r.code != 1 || !strings.Contains(r.stderr, "already the root of a bpffs mount") || !strings.Contains(r.stderr, "umount "+dir) {
			t.Errorf("mount %s again: %+v, want a refusal suggesting umount", path, r)
		}
	}
	if n := mounts(); n != 1 {
		t.Fatalf("%d mounts on %s, want 1", n, dir)
	}
	r = bpfgate(t, "check", "--cmds", "bogus")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown command "bogus"`) {
		t.Fatalf("bad name: %+v", r)
	}
}

// TestShowOnHost shows a delegated bpffs mounted on the host, as a program
// using the library can still make one: token show reports its options and
// why no token can be made.
func TestShowOnHost(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	set, err := names.SetFlags("map_create", "hash", "", "")
	if err != nil {
		t.Fatal(err)
	}
	mode, uid := uint32(0o700), uint32(100000)
	if err := bpffs.Mount(dir, bpffs.Options{Delegation: set, Mode: &mode, UID: &uid}); err != nil {
		t.Fatal(err)
	}
	defer bpffs.Unmount(dir)
	r := bpfgate(t, "token", "show", "--json", dir)
	var views []tokenShowJSON
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
	v := views[0]
	// A bpffs root is always sticky: mode 0700 is 1700 on the inode.
	if v.Options != "delegate_cmds=map_create,delegate_maps=hash" || v.Mode != "1700" || v.UID != 100000 {
		t.Fatalf("%+v", v)
	}
	if v.Token != nil || !strings.Contains(v.TokenError, "initial user namespace") {
		t.Fatalf("token on the host: %+v", v)
	}
}
