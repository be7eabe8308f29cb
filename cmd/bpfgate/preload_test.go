package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestPreloadFailureAndStatusCodes applies a good manifest next to one whose
// interface does not exist: the good one is applied, each result printed,
// and apply exits 1. status exits 0 only when everything is applied as
// written, 1 when something differs, 2 when it cannot tell.
func TestPreloadFailureAndStatusCodes(t *testing.T) {
	testutil.RequireRoot(t)
	root := filepath.Join(testutil.MountBPFFS(t), "bpfgate")
	dir := t.TempDir()
	examples, _ := filepath.Abs("../../examples/preload")
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := "object: " + examples + "/iterators_bpfel.o\nprograms:\n  - name: dump_bpf_map\n"
	write("good", good)
	// "bad" sorts before "good": a failure does not stop what follows.
	write("bad", "object: "+examples+"/counter_bpfel.o\nprograms:\n  - name: count_packets\n    interface: nope0\n")
	run := func(wantCode int, args ...string) result {
		t.Helper()
		r := bpfgate(t, append(args, "--dir", dir, "--root", root)...)
		if r.code != wantCode {
			t.Fatalf("bpfgate %s: exit %d, want %d: %s%s", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
		}
		return r
	}

	r := run(1, "preload", "status")
	if strings.Count(r.stdout, "not applied") != 2 {
		t.Errorf("status before apply: %q", r.stdout)
	}
	r = run(1, "preload", "apply")
	if !strings.Contains(r.stdout, "good: created") || !strings.Contains(r.stdout, "bad: failed: ") ||
		!strings.Contains(r.stdout, "nope0") || !strings.Contains(r.stderr, "1 of 2 objects failed") {
		t.Errorf("apply: %+v", r)
	}
	r = run(1, "preload", "status")
	if !strings.Contains(r.stdout, "not applied") {
		t.Errorf("status with bad not applied: %q", r.stdout)
	}

	os.Remove(filepath.Join(dir, "bad.yaml"))
	run(0, "preload", "status")
	run(0, "preload", "status", "--json")
	write("good", good+"# changed\n")
	r = run(1, "preload", "status")
	if !strings.Contains(r.stdout, "changed") {
		t.Errorf("status after a change: %q", r.stdout)
	}
	run(0, "preload", "apply")
	run(0, "preload", "status")
	write("other", "object: "+examples+"/iterators_bpfel.o\nprograms:\n  - name: dump_bpf_prog\n")
	run(0, "preload", "apply")
	os.Remove(filepath.Join(dir, "other.yaml"))
	r = run(1, "preload", "status")
	if !strings.Contains(r.stdout, "no manifest") {
		t.Errorf("status with an object without manifest: %q", r.stdout)
	}
	run(0, "preload", "apply", "--prune")
	run(0, "preload", "status")

	write("broken", "object: [\n")
	r = run(2, "preload", "status")
	if !strings.Contains(r.stderr, "broken.yaml") {
		t.Errorf("status with an unreadable manifest: %+v", r)
	}
	os.Remove(filepath.Join(dir, "broken.yaml"))
	r = bpfgate(t, "preload", "status", "--dir", filepath.Join(dir, "nope"), "--root", root)
	if r.code != 2 {
		t.Errorf("status of a missing directory: %+v", r)
	}
	run(0, "preload", "remove", "good")
}
