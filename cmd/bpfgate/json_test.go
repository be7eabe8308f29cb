package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// nonReporting are the commands that report nothing of their own: they
// print null under --json (as bpftool does), or pass a workload's output
// through (run), or answer a container runtime (oci-hook).
var nonReporting = map[string]bool{
	"bpfgate run": true, "bpfgate mount": true, "bpfgate pin": true, "bpfgate unpin": true,
	"bpfgate mv": true, "bpfgate oci-hook": true, "bpfgate oci-hook hooks-d": true,
	"bpfgate oci-hook seccomp": true, "bpfgate oci-hook precreate": true, "bpfgate oci-hook audit-recorder": true, "bpfgate man": true, "bpfgate doctor-hold": true,
	"bpfgate k8s nri": true, // a daemon: it logs, it reports nothing
	"bpfgate audit":   true, // streams JSON lines until stopped: audit_test.go checks them
}

// reportingCmd is a reporting command to run with --json and -p.
type reportingCmd struct {
	args  []string
	array bool // else an object
}

// k8sReporting are the reporting commands of the -tags k8s build
// (k8s_test.go adds them).
var k8sReporting []reportingCmd

// TestEveryReportingCommandPrintsJSON runs every reporting command with
// --json and -p and checks that stdout is one JSON document of the
// documented top-level type; a new command must be added here or to
// nonReporting.
func TestEveryReportingCommandPrintsJSON(t *testing.T) {
	testutil.RequireRoot(t)
	root := filepath.Join(testutil.MountBPFFS(t), "bpfgate")
	specs := t.TempDir()
	// The iterators only: the counter's XDP link on lo would collide with
	// the other tests that attach there.
	dir := t.TempDir()
	for _, f := range []string{"iterators.yaml", "iterators_bpfel.o"} {
		data, err := os.ReadFile(filepath.Join("../../examples/preload", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	pre := []string{"--dir", dir, "--root", root}
	reporting := append([]reportingCmd{
		{[]string{"token", "show"}, true},
		{[]string{"token", "probe"}, false},
		{[]string{"names"}, false},
		{[]string{"version"}, false},
		{[]string{"profiles"}, false},
		{[]string{"check", "--profile", "demo"}, false},
		{[]string{"cdi", "generate", "-o", filepath.Join(specs, "bpfgate.yaml")}, false},
		{[]string{"cdi", "list", "--spec-dir", specs}, true},
		{append([]string{"preload", "check"}, pre[:2]...), true},
		{append([]string{"preload", "apply"}, pre...), true},
		{append([]string{"preload", "status"}, pre...), true},
		{[]string{"ls", root}, true},
		{[]string{"preload", "remove", "iterators", "--root", root}, true},
		{[]string{"profile", "--", "true"}, false},
		{[]string{"doctor"}, false},
	}, k8sReporting...)
	covered := map[string]bool{}
	for _, tc := range reporting {
		for _, flag := range []string{"--json", "-p"} {
			args := append([]string{flag}, tc.args...)
			r := bpfgate(t, args...)
			if r.code != 0 {
				t.Errorf("%q: exit %d: %s%s", args, r.code, r.stdout, r.stderr)
				continue
			}
			var v any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
				t.Errorf("%q: not JSON: %v: %q", args, err, r.stdout)
				continue
			}
			if _, isArray := v.([]any); isArray != tc.array {
				t.Errorf("%q: want array %v: %q", args, tc.array, r.stdout)
			}
			lines := strings.Count(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if flag == "--json" && lines != 0 || flag == "-p" && lines == 0 && r.stdout != "[]\n" {
				t.Errorf("%q: %d lines: %q", args, lines+1, r.stdout)
			}
			if tc.args[0] == "preload" && tc.args[1] == "remove" {
				break // the second would find nothing to remove
			}
		}
		cmd, _, err := newRoot(&globals{}).Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		covered[cmd.CommandPath()] = true
	}
	// preload guard: status exits 1 when the guard is off, and enable and
	// disable fail where the kernel refuses BPF LSM programs (here); each
	// prints one JSON document all the same. On a kernel that runs the
	// guard, enable turns it on and disable off again; lock and sync, after
	// that, find no guard either way.
	for _, args := range [][]string{{"status"}, {"enable"}, {"status"}, {"disable"}, {"lock"}, {"sync"}} {
		args = append([]string{"--json", "preload", "guard"}, append(args, "--root", root)...)
		r := bpfgate(t, args...)
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%q: exit %d, not one line of JSON: %v: %q", args, r.code, err, r.stdout)
		}
		if _, isArray := v.([]any); isArray {
			t.Errorf("%q: an array: %q", args, r.stdout)
		}
		cmd, _, err := newRoot(&globals{}).Find(args[1:])
		if err != nil {
			t.Fatal(err)
		}
		covered[cmd.CommandPath()] = true
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && !covered[c.CommandPath()] && !nonReporting[c.CommandPath()] {
			t.Errorf("%s: neither checked here for JSON nor listed as non-reporting", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&globals{}))

	// cdi generate to stdout under --json is the spec itself, as JSON.
	r := bpfgate(t, "cdi", "generate", "-o", "-", "-j")
	var spec struct {
		Kind    string `json:"kind"`
		Devices []any  `json:"devices"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil || spec.Kind != "bpfgate.dev/bpf" || len(spec.Devices) == 0 {
		t.Errorf("cdi generate -o - -j: %v %+v", err, r)
	}
}

// TestJSONErrors: under --json an error is {"error": "..."} on stdout and
// the exit is non-zero, for errors from commands and from flag parsing.
func TestJSONErrors(t *testing.T) {
	for _, args := range [][]string{
		{"ls", "-j", "/nonexistent"},
		{"-p", "ls", "/nonexistent"},
		{"token", "show", "--json", "/nonexistent"},
		{"check", "-j", "--progs", "socket_fltr"},
		{"names", "-j", "bogus"},
		{"--config", "/nonexistent/config.yaml", "profiles", "-j"},
		{"preload", "check", "-j", "--dir", "/nonexistent"},
		{"pin", "-j", "map", "0", "/nonexistent"},
		{"ls", "-j", "--bogus"},
		{"-j", "bogus"},
	} {
		r := bpfgate(t, args...)
		var e map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &e); r.code == 0 || err != nil || len(e) != 1 || e["error"] == "" || e["error"] == nil {
			t.Errorf("%q: exit %d, stdout %q (%v), stderr %q", args, r.code, r.stdout, err, r.stderr)
		}
	}
	// Without --json, errors stay on stderr.
	if r := bpfgate(t, "ls", "/nonexistent"); r.code == 0 || strings.Contains(r.stdout, "error") || !strings.Contains(r.stderr, "bpfgate: ") {
		t.Errorf("text error: %+v", r)
	}
}

// TestJSONPerObjectFailure: a failed object is reported in the array, with
// the error, and the exit is non-zero.
func TestJSONPerObjectFailure(t *testing.T) {
	testutil.RequireRoot(t)
	root := testutil.MountBPFFS(t)
	r := bpfgate(t, "preload", "remove", "-j", "nope", "--root", root)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code == 0 || err != nil || len(got) != 1 ||
		got[0]["action"] != "failed" || !strings.Contains(got[0]["error"].(string), "nope") {
		t.Errorf("exit %d: %q (%v)", r.code, r.stdout, err)
	}
}

// TestNonReportingPrintNull: commands with nothing to report print null
// under --json, as bpftool does, so every --json output is JSON.
func TestNonReportingPrintNull(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	r := bpfgate(t, "mount", "-j", dir)
	if r.code != 0 || r.stdout != "null\n" {
		t.Fatalf("mount -j: %+v", r)
	}
	bpffs.Unmount(dir)
	if r := bpfgate(t, "mount", dir); r.code != 0 || r.stdout != "" {
		t.Fatalf("mount: %+v", r)
	}
	bpffs.Unmount(dir)
}

// TestTokenShowStickyMode: the kernel's mount options drop the sticky bit
// (a 1777 mount shows no mode at all); token show reports the real mode.
func TestTokenShowStickyMode(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	if err := bpffs.Mount(dir, bpffs.Options{Delegation: hostSet(t, "map_create", "", "", ""), Mode: ptr(uint32(0o1777))}); err != nil {
		t.Fatal(err)
	}
	defer bpffs.Unmount(dir)
	r := bpfgate(t, "token", "show", "-j", dir)
	var views []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
	if views[0]["mode"] != "1777" {
		t.Errorf("mode %v, want 1777", views[0]["mode"])
	}
	if r := bpfgate(t, "token", "show", dir); !strings.Contains(r.stdout, "mode 1777") {
		t.Errorf("text: %q", r.stdout)
	}
}

// TestTokenShowMatchesBPFToolTokenList: token show's delegation keys are
// bpftool token list's (v7.6+), whose values are the mount options the
// kernel shows, split at ':'. bpftool 7.5 has no token command, so the
// mount options are the reference.
func TestTokenShowMatchesBPFToolTokenList(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.PublicDir(t)
	// Delegated mounts on the host are the library's to make (the CLI
	// refuses them: no token can come from one).
	if err := bpffs.Mount(dir, bpffs.Options{Delegation: hostSet(t, "map_create:prog_load", "any", "", "cgroup_inet_ingress")}); err != nil {
		t.Fatal(err)
	}
	defer bpffs.Unmount(dir)
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"token_info": dir, "allowed_cmds": []any{}, "allowed_maps": []any{},
		"allowed_progs": []any{}, "allowed_attachs": []any{}}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != dir {
			continue
		}
		for _, opt := range strings.Split(f[len(f)-1], ",") {
			k, v, _ := strings.Cut(opt, "=")
			if kind, ok := strings.CutPrefix(k, "delegate_"); ok {
				var list []any
				for _, n := range strings.Split(v, ":") {
					list = append(list, n)
				}
				want["allowed_"+kind] = list
			}
		}
	}
	r := bpfgate(t, "token", "show", "-j", dir)
	var views []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
	for k, v := range want {
		if !reflect.DeepEqual(views[0][k], v) {
			t.Errorf("%s: bpfgate %v, bpftool would print %v", k, views[0][k], v)
		}
	}
	if !reflect.DeepEqual(want["allowed_maps"], []any{"any"}) {
		t.Errorf("mountinfo not read: %v", want)
	}
}

// TestNamesSourceOnStderr: the note on where the names come from is not
// part of the output.
func TestNamesSourceOnStderr(t *testing.T) {
	r := bpfgate(t, "names", "cmds")
	if r.code != 0 || strings.Contains(r.stdout, "names from") || !strings.Contains(r.stderr, "(names from ") {
		t.Errorf("%+v", r)
	}
}

// hostSet is a delegation of names on the running kernel.
func hostSet(t *testing.T, cmds, maps, progs, attachs string) delegate.Set {
	t.Helper()
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	set, err := names.SetFlags(cmds, maps, progs, attachs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func ptr[T any](v T) *T { return &v }
