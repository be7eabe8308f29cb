package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/pins"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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
		// preload apply, with the guard on, has it protect what it
		// pinned by id too: the new link's id is in the guard's map of
		// protected ids (key: kind 1, link, << 32 | id), and remove takes
		// it out. (This test binary is the manager: the refusals
		// themselves are preload/guard's tests.)
		examples, _ := filepath.Abs("../../examples/preload")
		dir := t.TempDir()
		manifest := "object: " + examples + "/iterators_bpfel.o\nprograms:\n  - name: dump_bpf_map\n"
		if err := os.WriteFile(filepath.Join(dir, "iterators.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := bpfgate(t, "preload", "apply", "--dir", dir, "--root", root); r.code != 0 {
			t.Fatalf("apply with the guard on: %+v", r)
		}
		var ents []pins.Entry
		r := bpfgate(t, "ls", "--json", filepath.Join(root, "iterators/links/dump_bpf_map"))
		if err := json.Unmarshal([]byte(r.stdout), &ents); err != nil || len(ents) != 1 || ents[0].Kind != pins.KindLink {
			t.Fatalf("ls --json of the new link: %+v %v", r, err)
		}
		protected := func() bool {
			m, err := ebpf.LoadPinnedMap(filepath.Join(root, "@guard/maps/guard_ids"), &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var v uint8
			return m.Lookup(uint64(1)<<32|uint64(ents[0].ID), &v) == nil
		}
		if !protected() {
			t.Errorf("after apply, link %d is not protected by id", ents[0].ID)
		}
		if r := bpfgate(t, "preload", "remove", "iterators", "--root", root); r.code != 0 {
			t.Errorf("remove with the guard on: %+v", r)
		}
		if protected() {
			t.Errorf("after remove, link %d is still protected by id", ents[0].ID)
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

// TestPreloadGuardLockCLI: where the kernel runs the guard (test/kernels
// runs this test alone in a VM: a locked guard stays until reboot), enable
// --lock leaves it on and locked: status says so, disable and lock fail
// with the reason, and bpfgate itself, the former manager, may no longer
// unpin what is in the tree. Where the kernel refuses the guard (this
// host), enable --lock fails as enable does and changes nothing, and lock
// says there is no guard to lock.
func TestPreloadGuardLockCLI(t *testing.T) {
	testutil.RequireRoot(t)
	// Mounted by hand: a locked guard refuses the unmount, and the
	// directory's removal, that testutil.MountBPFFS and t.TempDir would
	// fail the test on.
	mnt, err := os.MkdirTemp("", "bpfgate-lock-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	locked := false
	t.Cleanup(func() {
		if !locked {
			unix.Unmount(mnt, unix.MNT_DETACH)
			os.Remove(mnt)
		}
	})
	root := filepath.Join(mnt, "bpfgate")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(root, "kept")
	if err := m.Pin(pin); err != nil {
		t.Fatal(err)
	}
	m.Close()

	r := bpfgate(t, "preload", "guard", "enable", "--lock", "--root", root)
	if r.code != 0 {
		if r.code != 1 || !strings.Contains(r.stderr, "CONFIG_BPF_LSM") {
			t.Fatalf("enable --lock where the kernel refuses the guard: %+v", r)
		}
		if names, err := os.ReadDir(root); err != nil || len(names) != 1 || names[0].Name() != "kept" {
			t.Errorf("a refused enable --lock changed %s: %v %v", root, names, err)
		}
		r = bpfgate(t, "preload", "guard", "lock", "--root", root)
		if r.code != 1 || !strings.Contains(r.stderr, "the guard is not enabled: nothing is pinned at "+root) {
			t.Errorf("lock without a guard: %+v", r)
		}
		return
	}
	locked = true
	t.Logf("this kernel runs the guard: %s", r.stdout)
	if !strings.Contains(r.stdout, "guard: on") || !strings.Contains(r.stdout, "manager: none: locked until reboot") {
		t.Errorf("enable --lock printed %q", r.stdout)
	}
	r = bpfgate(t, "preload", "guard", "status", "--root", root, "--json")
	var st struct{ Enabled, Locked bool }
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 || !st.Enabled || !st.Locked {
		t.Errorf("status --json of a locked guard: exit %d, %q, %v", r.code, r.stdout, err)
	}
	for _, args := range [][]string{{"preload", "guard", "disable"}, {"preload", "guard", "lock"}} {
		r = bpfgate(t, append(args, "--root", root)...)
		if r.code != 1 || !strings.Contains(r.stderr, "the guard is locked until reboot") {
			t.Errorf("%v of a locked guard: %+v", args, r)
		}
	}
	r = bpfgate(t, "unpin", pin)
	if r.code == 0 || !strings.Contains(r.stderr, "operation not permitted") {
		t.Errorf("unpin by bpfgate, the former manager, in a locked tree: %+v", r)
	}
	if _, err := os.Lstat(pin); err != nil {
		t.Errorf("the pin is gone: %v", err)
	}
}
