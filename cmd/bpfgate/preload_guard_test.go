package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestPreloadGuardCLI: where the kernel refuses BPF LSM programs (this
// project's hosts), enable exits 1 saying why and what is needed, creates
// nothing, and status exits 1 saying the guard is off and why enable would
// fail; with --json both print one document. On a kernel that runs them,
// enable, status and disable exit 0.
func TestPreloadGuardCLI(t *testing.T) {
	testutil.RequireRoot(t)
	mnt := testutil.MountBPFFS(t)
	root := filepath.Join(mnt, "bpfgate")

	r := bpfgate(t, "preload", "guard", "enable", "--root", root, "--json")
	if r.code == 0 {
		t.Logf("this kernel runs the guard: %s", r.stdout)
		if r := bpfgate(t, "preload", "guard", "status", "--root", root); r.code != 0 || !strings.Contains(r.stdout, "guard: on") {
			t.Errorf("status with the guard on: %+v", r)
		}
		if r := bpfgate(t, "preload", "guard", "disable", "--root", root); r.code != 0 {
			t.Fatalf("disable: %+v", r)
		}
		os.RemoveAll(root)
	} else {
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || r.code != 1 {
			t.Fatalf("enable --json: exit %d, %q, %v", r.code, r.stdout, err)
		}
		for _, want := range []string{"refuses BPF LSM programs", "CONFIG_BPF_LSM", "lsm="} {
			if !strings.Contains(e.Error, want) {
				t.Errorf("enable's error does not say %q: %s", want, e.Error)
			}
		}
		if _, err := os.Lstat(root); err == nil {
			t.Errorf("a refused enable created %s", root)
		}
		r = bpfgate(t, "preload", "guard", "enable", "--root", root)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "CONFIG_BPF_LSM") {
			t.Errorf("enable: %+v", r)
		}
	}

	r = bpfgate(t, "preload", "guard", "status", "--root", root, "--json")
	var st struct {
		Enabled bool
		Root    string
		Why     string
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 1 || st.Enabled || st.Root != root || !strings.Contains(st.Why, "not enabled") {
		t.Errorf("status --json when off: exit %d, %q, %v", r.code, r.stdout, err)
	}
	r = bpfgate(t, "preload", "guard", "disable", "--root", root)
	if r.code != 1 || !strings.Contains(r.stderr, "not enabled") {
		t.Errorf("disable when off: %+v", r)
	}
}
