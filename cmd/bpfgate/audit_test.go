package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/token"
)

// auditWorkloadEnv and the argument audit-workload make the test binary
// the workload of the audit tests: it prints its user namespace, waits for
// a line on stdin if told to, then makes a hash map (delegated by the demo
// profile) and a ring buffer (not delegated) with its token.
const auditWorkloadEnv = "BPFGATE_TEST_AUDIT_WORKLOAD"

func init() {
	if os.Getenv(auditWorkloadEnv) == "1" && len(os.Args) >= 2 && os.Args[1] == "audit-workload" {
		os.Exit(auditWorkload(len(os.Args) > 2 && os.Args[2] == "wait"))
	}
}

func auditWorkload(wait bool) int {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	fmt.Println(st.Ino)
	if wait {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	tok, err := token.Create("/sys/fs/bpf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer tok.Close()
	code := 0
	for _, m := range []struct {
		typ, key, value uint32
		want            error
	}{{1, 4, 4, nil}, {27, 0, 0, unix.EPERM}} {
		a := sys.MapCreateAttr{MapType: m.typ, KeySize: m.key, ValueSize: m.value, MaxEntries: 4096,
			MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok.FD())}
		fd, err := sys.MapCreate(&a)
		if fd > 0 {
			unix.Close(fd)
		}
		if !errors.Is(err, m.want) && (err != nil || m.want != nil) {
			fmt.Fprintf(os.Stderr, "map type %d: %v, want %v\n", m.typ, err, m.want)
			code = 4
		}
	}
	return code
}

// auditExe is the test binary where the workload (an unprivileged host
// uid) can execute it.
func auditExe(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := publicCopy(t, self)
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// auditKeys are the keys of an event, in order (docs/audit.md).
var auditKeys = []string{"time", "pid", "tid", "comm", "uid", "userns", "cgroup_id", "cmd",
	"map_type", "prog_type", "attach_type", "name", "map_id", "prog_id", "token", "ret", "errno", "outcome", "reason"}

// readEvents reads JSON lines and checks the conventions: one compact
// object per line, keys from auditKeys in that order, names as strings,
// the token's delegation as arrays of names.
func readEvents(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not JSON: %v: %q", err, line)
		}
		if _, drop := e["dropped"]; drop {
			t.Errorf("events dropped: %s", line)
			continue
		}
		var keys []string
		dec := json.NewDecoder(strings.NewReader(line))
		dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var v json.RawMessage
			dec.Decode(&v)
		}
		last := -1
		for _, k := range keys {
			i := slices.Index(auditKeys, k)
			if i <= last {
				t.Errorf("key %q unknown or out of order: %s", k, line)
			}
			last = i
		}
		if tok, ok := e["token"].(map[string]any); ok {
			for _, k := range []string{"allowed_cmds", "allowed_maps", "allowed_progs", "allowed_attachs"} {
				if _, ok := tok[k].([]any); !ok {
					t.Errorf("token %s is not an array: %s", k, line)
				}
			}
		}
		evs = append(evs, e)
	}
	return evs
}

// checkTwo checks the hash map and ring buffer events of auditWorkload.
func checkTwo(t *testing.T, evs []map[string]any, userns float64) {
	t.Helper()
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %v", len(evs), evs)
	}
	want := []struct{ typ, outcome, errno, reason string }{
		{"hash", "ok", "", ""},
		{"ringbuf", "denied", "EPERM", "map type ringbuf not delegated"},
	}
	for i, w := range want {
		e := evs[i]
		errno, _ := e["errno"].(string)
		reason, _ := e["reason"].(string)
		if e["cmd"] != "map_create" || e["map_type"] != w.typ || e["outcome"] != w.outcome || errno != w.errno || reason != w.reason {
			t.Errorf("event %d: %v, want %+v", i, e, w)
		}
		tok, _ := e["token"].(map[string]any)
		if e["userns"] != userns || tok == nil || tok["userns"] != userns || !reflect.DeepEqual(tok["allowed_maps"], []any{"hash", "array"}) {
			t.Errorf("event %d: userns or token: %v", i, e)
		}
	}
	if id, _ := evs[0]["map_id"].(float64); id == 0 {
		t.Errorf("no map_id: %v", evs[0])
	}
}

// TestRunAudit: bpfgate run --audit records exactly the workload's two
// calls, the allowed hash map and the refused ring buffer, with the reason.
func TestRunAudit(t *testing.T) {
	testutil.RequireRoot(t)
	exe := auditExe(t)
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	cmd, stdout, stderr := bpfgateCmd(t, "", nil, "run", "--audit", out, "--profile", "demo", "--", exe, "audit-workload")
	cmd.Env = append(cmd.Env, auditWorkloadEnv+"=1")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v: %s%s", err, stdout, stderr)
	}
	var userns float64
	if _, err := fmt.Sscan(stdout.String(), &userns); err != nil {
		t.Fatalf("workload output %q: %v", stdout, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode: %v %v", st.Mode(), err)
	}
	checkTwo(t, readEvents(t, data), userns)

	// A file that cannot be made: the workload does not run.
	r := runCLI(t, nil, "run", "--audit", "/nonexistent/x", "--profile", "demo", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "--audit") {
		t.Errorf("bad --audit file: %+v", r)
	}
}

// TestAuditCommand: bpfgate audit, filtered to a workload's user
// namespace, prints its two calls as JSON lines or as a table, and ends
// cleanly on SIGINT and SIGTERM; a filter naming another user namespace
// prints nothing.
func TestAuditCommand(t *testing.T) {
	testutil.RequireRoot(t)
	exe := auditExe(t)
	// The workload starts, says its user namespace, and waits.
	wl, wlOut, wlErr := bpfgateCmd(t, "", nil, "run", "--profile", "demo", "--", exe, "audit-workload", "wait")
	wl.Env = append(wl.Env, auditWorkloadEnv+"=1")
	goW, err := wl.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	wl.Stdout = io.MultiWriter(wlOut, pw)
	if err := wl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { goW.Close(); wl.Process.Kill(); wl.Wait() })
	var userns uint64
	if _, err := fmt.Fscan(bufio.NewReader(pr), &userns); err != nil {
		t.Fatalf("workload: %v: %s", err, wlErr)
	}
	go io.Copy(io.Discard, pr)

	dir := t.TempDir()
	type recorder struct {
		cmd            *exec.Cmd
		stdout, stderr *bytes.Buffer
		file           string
		sig            syscall.Signal
	}
	start := func(sig syscall.Signal, file string, args ...string) *recorder {
		cmd, stdout, stderr := bpfgateCmd(t, "", nil, append([]string{"audit"}, args...)...)
		r := &recorder{cmd, stdout, stderr, file, sig}
		ready, rw := io.Pipe()
		cmd.Stderr = io.MultiWriter(stderr, rw)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line, err := bufio.NewReader(ready).ReadString('\n')
		if err != nil || !strings.Contains(line, "recording") {
			t.Fatalf("%v: %q %v %s", args, line, err, stderr)
		}
		// The ABIs: ia32 where the kernel has it, as here, and the hook
		// that sees them.
		if abis := "through " + strings.Join(audit.ABIs(), ", ") + " (tp_btf sys_exit)"; !strings.Contains(line, abis) {
			t.Errorf("%v: %q does not say %q", args, line, abis)
		}
		go io.Copy(io.Discard, ready)
		return r
	}
	ns := fmt.Sprint(userns)
	jsonFile := filepath.Join(dir, "audit.jsonl")
	recs := []*recorder{
		start(syscall.SIGINT, jsonFile, "--json", "--userns", ns, "--output", jsonFile),
		start(syscall.SIGTERM, "", "--userns", ns),
		start(syscall.SIGINT, filepath.Join(dir, "other.jsonl"), "-j", "--userns", fmt.Sprint(userns+1), "-o", filepath.Join(dir, "other.jsonl")),
	}
	goW.Write([]byte("go\n"))
	goW.Close()
	if err := wl.Wait(); err != nil {
		t.Fatalf("workload: %v: %s", err, wlErr)
	}
	for _, r := range recs {
		r.cmd.Process.Signal(r.sig)
		if err := r.cmd.Wait(); err != nil {
			t.Errorf("%v: %v: %s", r.cmd.Args, err, r.stderr)
		}
		if !strings.Contains(r.stderr.String(), "dropped") {
			t.Errorf("%v: no drop count: %s", r.cmd.Args, r.stderr)
		}
	}
	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	checkTwo(t, readEvents(t, data), float64(userns))
	if recs[0].stdout.Len() != 0 {
		t.Errorf("--output: stdout %q", recs[0].stdout)
	}
	table := strings.Split(strings.TrimSpace(recs[1].stdout.String()), "\n")
	if len(table) != 3 || !strings.HasPrefix(table[0], "TIME") ||
		!strings.Contains(table[1], "map_create hash") || !strings.Contains(table[1], "map ") ||
		!strings.Contains(table[2], "ringbuf") || !strings.Contains(table[2], "EPERM") || !strings.HasSuffix(table[2], "map type ringbuf not delegated") {
		t.Errorf("table:\n%s", recs[1].stdout)
	}
	if other, err := os.ReadFile(filepath.Join(dir, "other.jsonl")); err != nil || len(other) != 0 {
		t.Errorf("another user namespace's filter recorded %q (%v)", other, err)
	}
}

func TestAuditFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "--pid", "1", "--userns", "4026531837"}, "at most one of"},
		{[]string{"audit", "--userns", "bogus"}, "inode number"},
		{[]string{"audit", "--userns", "/etc/passwd"}, "not a namespace file"},
		{[]string{"audit", "--pid", "-2"}, "want a process id"},
		{[]string{"audit", "extra"}, "unknown command"},
	} {
		r := bpfgate(t, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: %+v", tc.args, r)
		}
		r = bpfgate(t, append(tc.args, "--json")...)
		var e map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &e); r.code == 0 || err != nil || len(e) != 1 || !strings.Contains(fmt.Sprint(e["error"]), tc.want) {
			t.Errorf("%q --json: %+v", tc.args, r)
		}
	}
	if ns, err := parseUserNS("/proc/self/ns/user"); err != nil || ns != audit.HostUserNS {
		t.Errorf("/proc/self/ns/user: %d %v", ns, err)
	}
	if ns, err := parseUserNS("4026532841"); err != nil || ns != 4026532841 {
		t.Errorf("number: %d %v", ns, err)
	}
}

// TestAuditContainerMissing: --container names the container it cannot
// find, and nothing is recorded. (A running container is found by
// doctor.FindContainer, tested with doctor --container.)
func TestAuditContainerMissing(t *testing.T) {
	r := bpfgate(t, "audit", "--container", "bpfgate-no-such-container", "--runtime-root", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "bpfgate-no-such-container") || strings.Contains(r.stderr, "recording") {
		t.Errorf("%+v", r)
	}
}

// TestAuditTable: a row of the readable table, for a call through each
// ABI; the ABI shows only where it is not x86-64.
func TestAuditTable(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	for _, tc := range []struct {
		e    audit.Event
		want string
	}{
		{audit.Event{Time: when, Pid: 42, Comm: "loader", UserNS: 4026532841, Cmd: "map_create", MapType: "hash", MapID: 7,
			Token: &audit.Token{BPFFSDev: "0:52"}},
			"03:04:05.006      42 loader          4026532841 map_create hash                               0:52     map 7"},
		{audit.Event{Time: when, Pid: 42, Comm: "loader", UserNS: 4026532841, Cmd: "map_create", MapType: "ringbuf", ABI: "ia32",
			Ret: -1, Errno: "EPERM", Reason: "map type ringbuf not delegated", Token: &audit.Token{BPFFSDev: "0:52"}},
			"03:04:05.006      42 loader          4026532841 map_create (ia32) ringbuf                            0:52     EPERM       map type ringbuf not delegated"},
	} {
		var b bytes.Buffer
		w := &auditWriter{out: &b}
		if err := w.event(&tc.e); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(b.String(), "\n"); got != tc.want {
			t.Errorf("got\n%q\nwant\n%q", got, tc.want)
		}
	}
}
