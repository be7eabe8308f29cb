package containers

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// auditBundle is e.bundle whose container runs "ebpfcheck audit" (a hash
// map and a ring buffer, nothing else) with hookArgs added to its hook's.
func (e *env) auditBundle(t *testing.T, profile string, hookArgs ...string) (dir, id string) {
	t.Helper()
	dir = e.bundle(t, profile, true)
	cfg := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Args = []string{"/bin/ebpfcheck", "audit"}
	h := &spec.Hooks.CreateRuntime[0]
	h.Args = append(h.Args, hookArgs...)
	if data, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, "bpfgate-e2e-audit-" + filepath.Base(filepath.Dir(dir))
}

func (e *env) runc(dir, id string) (string, error) {
	return run("runc", "--root", filepath.Join(e.dir, "runc"), "run", "--bundle", dir, id)
}

// recorders are the processes that have path open as the recorder's
// output (its descriptor 4): the recorder of that one container.
func recorders(path string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		if ent.Name()[0] < '0' || ent.Name()[0] > '9' {
			continue
		}
		if l, err := os.Readlink("/proc/" + ent.Name() + "/fd/4"); err == nil && l == path {
			pids = append(pids, ent.Name())
		}
	}
	return pids
}

// auditEvents waits (bounded) for the container's recorder to exit, then
// reads its file.
func auditEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(recorders(path)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the recorder (pids %v) is still running 10s after its container ended", recorders(path))
		}
		time.Sleep(50 * time.Millisecond)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode: %v %v", st.Mode(), err)
	}
	var evs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%v: %q", err, sc.Text())
		}
		evs = append(evs, e)
	}
	return evs
}

// checkAuditPair checks the two events of "ebpfcheck audit" under demo.
func checkAuditPair(t *testing.T, evs []map[string]any) {
	t.Helper()
	t.Logf("events: %v", evs)
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
		if e["cmd"] != "map_create" || e["map_type"] != w.typ || e["outcome"] != w.outcome || errno != w.errno || reason != w.reason || e["comm"] != "ebpfcheck" {
			t.Errorf("event %d: %v, want %+v", i, e, w)
		}
		tok, _ := e["token"].(map[string]any)
		if tok == nil || tok["userns"] != e["userns"] || !reflect.DeepEqual(tok["allowed_maps"], []any{"hash", "array"}) {
			t.Errorf("event %d: token: %v", i, e)
		}
	}
	if evs[0]["userns"] != evs[1]["userns"] {
		t.Errorf("two user namespaces: %v", evs)
	}
}

// TestHookAudit: a container audited through the hook's --audit gets
// exactly its two bpf() calls recorded, with the reason of the refusal, and
// the recorder ends with the container.
func TestHookAudit(t *testing.T) {
	e := setup(t)
	adir := t.TempDir()
	dir, id := e.auditBundle(t, "demo", "--audit", adir)
	out, err := e.runc(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["map/hash"] != "ok" || res["map/ringbuf"] != "EPERM" {
		t.Fatalf("workload: %v %q", err, out)
	}
	checkAuditPair(t, auditEvents(t, filepath.Join(adir, id+".jsonl")))
}

// TestHookAuditProfile: the profile's audit directory asks for the same.
func TestHookAuditProfile(t *testing.T) {
	e := setup(t)
	adir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	pol := "profiles:\n  audited:\n    maps: [hash, array]\n    cmds: [map_create]\n    audit: " + adir + "\n"
	if err := os.WriteFile(cfg, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	// The later --config wins over the bundle's.
	dir, id := e.auditBundle(t, "audited", "--config", cfg)
	if _, err := e.runc(dir, id); err != nil {
		t.Fatal(err)
	}
	checkAuditPair(t, auditEvents(t, filepath.Join(adir, id+".jsonl")))
}

// TestHookAuditRefused: the hook refuses the container, rather than run it
// unaudited, when its record cannot be written safely.
func TestHookAuditRefused(t *testing.T) {
	e := setup(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, adir, file string)
		want  string
		args  []string // more hook arguments
	}{
		{"world-writable", func(t *testing.T, adir, _ string) { os.Chmod(adir, 0o777) }, "unsafe audit directory", nil},
		{"group-writable", func(t *testing.T, adir, _ string) { os.Chmod(adir, 0o770) }, "unsafe audit directory", nil},
		{"not root's", func(t *testing.T, adir, _ string) { os.Chown(adir, 65534, 0) }, "owner uid 65534", nil},
		{"missing", func(t *testing.T, adir, _ string) { os.Remove(adir) }, "unsafe audit directory", nil},
		{"symlink", func(t *testing.T, adir, _ string) {
			real := adir + ".real"
			os.Mkdir(real, 0o700)
			os.Remove(adir)
			os.Symlink(real, adir)
		}, "a symlink (give the real path)", nil},
		{"file exists", func(t *testing.T, _, file string) { os.WriteFile(file, nil, 0o600) }, "file exists (a record is never overwritten", nil},
		{"file is a symlink", func(t *testing.T, _, file string) { os.Symlink("/etc/passwd-bpfgate-nonexistent", file) }, "file exists (a record is never overwritten", nil},
		// No recorder attaches in a millisecond: killed, and its file removed.
		{"recorder too slow", func(*testing.T, string, string) {}, "the recorder did not attach (no answer within 1ms)", []string{"--timeout", "1ms"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			adir := filepath.Join(t.TempDir(), "audit")
			if err := os.Mkdir(adir, 0o700); err != nil {
				t.Fatal(err)
			}
			dir, id := e.auditBundle(t, "demo", append([]string{"--audit", adir}, tc.args...)...)
			file := filepath.Join(adir, id+".jsonl")
			tc.setup(t, adir, file)
			before := bpfMounts(t)
			_, err := e.runc(dir, id)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if after := bpfMounts(t); after != before {
				t.Errorf("host bpffs mounts: %d before, %d after", before, after)
			}
			if pids := recorders(file); len(pids) > 0 {
				t.Errorf("recorders left running: %v", pids)
			}
			if tc.args != nil {
				if _, err := os.Lstat(file); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", file, err)
				}
			}
		})
	}
}

// TestHookAuditPodman: the same through podman and a hooks.d entry made by
// oci-hook hooks-d --audit, where the hook runs under conmon.
func TestHookAuditPodman(t *testing.T) {
	e := setup(t)
	adir, hooks := t.TempDir(), t.TempDir()
	if _, err := run(e.bpfgate, "--config", e.config, "oci-hook", "hooks-d", "-o", filepath.Join(hooks, "bpfgate.json"), "--audit", adir); err != nil {
		t.Fatal(err)
	}
	cidFile := filepath.Join(t.TempDir(), "cid")
	args := append([]string{"run", "--rm", "--cidfile", cidFile, "--hooks-dir", hooks, "--annotation", "io.bpfgate.profile=demo"}, e.userns()...)
	out, err := e.runPodman(append(args, e.image, "/bin/ebpfcheck", "audit")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"map/ringbuf":"EPERM"`) {
		t.Errorf("workload: %q", out)
	}
	cid, err := os.ReadFile(cidFile)
	if err != nil {
		t.Fatal(err)
	}
	checkAuditPair(t, auditEvents(t, filepath.Join(adir, strings.TrimSpace(string(cid))+".jsonl")))
}
