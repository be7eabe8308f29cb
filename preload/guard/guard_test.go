package guard

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// guardObjectsLeft counts the kernel's maps, programs and links that are the
// guard's (by name), polling for up to 5 s because the kernel frees them
// asynchronously after their last fd closes.
func guardObjectsLeft(t *testing.T) []string {
	t.Helper()
	progNames := map[string]bool{}
	for _, p := range programs(&guardPrograms{}) {
		progNames[p.name] = true
	}
	mapNames := map[string]bool{}
	for n := range mapsByName(&guardMaps{}) {
		mapNames[n] = true
	}
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for id := ebpf.MapID(0); ; {
			next, err := ebpf.MapGetNextID(id)
			if err != nil {
				break
			}
			id = next
			if m, err := ebpf.NewMapFromID(id); err == nil {
				if info, err := m.Info(); err == nil && mapNames[info.Name] {
					left = append(left, "map "+info.Name)
				}
				m.Close()
			}
		}
		for id := ebpf.ProgramID(0); ; {
			next, err := ebpf.ProgramGetNextID(id)
			if err != nil {
				break
			}
			id = next
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				if info, err := p.Info(); err == nil && progNames[info.Name] {
					left = append(left, "prog "+info.Name)
				}
				p.Close()
			}
		}
		it := new(link.Iterator)
		for it.Next() {
			if info, err := it.Link.Info(); err == nil {
				if p, err := ebpf.NewProgramFromID(info.Program); err == nil {
					if pi, err := p.Info(); err == nil && progNames[pi.Name] {
						left = append(left, "link of "+pi.Name)
					}
					p.Close()
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return slices.Clone(left)
		}
	}
}

// TestEnableRefusedLeavesNothing: on a kernel that refuses BPF LSM programs
// (this project's 6.18 hosts refuse every trampoline type, even to root)
// Enable says why and what is needed, and leaves no directory, pin, map,
// program or link. On a kernel that runs them (the 6.12 VM of the kernel
// matrix), Enable and Disable must together leave nothing either.
func TestEnableRefusedLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	if left := guardObjectsLeft(t); len(left) > 0 {
		t.Fatalf("a guard is already loaded on this machine (%v): cannot tell what this test leaves", left)
	}
	mnt := testutil.MountBPFFS(t)
	before := listing(t, mnt)
	root := filepath.Join(mnt, "bpfgate")
	opts := Options{Root: root}

	st, err := Enable(opts)
	if err == nil {
		t.Logf("this kernel runs BPF LSM programs: guard enabled (%d links); disabling", len(st.Links))
		if !st.Enabled {
			t.Errorf("Enable succeeded but Status says: %s", st.Why)
		}
		if err := Disable(opts); err != nil {
			t.Fatalf("Disable: %v", err)
		}
		if err := os.RemoveAll(root); err != nil {
			t.Fatalf("after Disable, removing the tree: %v", err)
		}
	} else {
		t.Logf("Enable: %v", err)
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Enable failed, but not with ErrUnsupported: %v", err)
		}
		for _, want := range []string{"CONFIG_BPF_LSM", "lsm=", "trampoline", "operation not permitted"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
		if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Enable failed but left %s (%v)", root, err)
		}
	}
	if after := listing(t, mnt); !slices.Equal(before, after) {
		t.Errorf("the bpffs held %v, now %v", before, after)
	}
	if left := guardObjectsLeft(t); len(left) > 0 {
		t.Errorf("left in the kernel: %v", left)
	}
	st, err = Status(opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enabled || !strings.Contains(st.Why, "not enabled") {
		t.Errorf("Status after a refused Enable: %+v", st)
	}
}

// TestStatusAndDisableWhenOff: status of an unguarded tree says so and why;
// Disable says there is nothing to disable; neither creates anything.
func TestStatusAndDisableWhenOff(t *testing.T) {
	testutil.RequireRoot(t)
	mnt := testutil.MountBPFFS(t)
	before := listing(t, mnt)
	opts := Options{Root: filepath.Join(mnt, "bpfgate")}
	st, err := Status(opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enabled || st.Root != opts.Root || !strings.Contains(st.Why, "nothing is pinned at "+filepath.Join(opts.Root, Dir)) {
		t.Errorf("Status: %+v", st)
	}
	if err := Disable(opts); !errors.Is(err, ErrNotEnabled) {
		t.Errorf("Disable of an unguarded tree: %v, want ErrNotEnabled", err)
	}
	if err := Lock(opts); !errors.Is(err, ErrNotEnabled) || !strings.Contains(err.Error(), "nothing is pinned at") {
		t.Errorf("Lock of an unguarded tree: %v, want ErrNotEnabled and why", err)
	}
	if after := listing(t, mnt); !slices.Equal(before, after) {
		t.Errorf("the bpffs held %v, after status, disable and lock %v", before, after)
	}
}

// listing is every path below dir (a new bpffs holds maps.debug and
// progs.debug on some kernels).
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCallerIsManager: the State's manager is this process when its device
// and inode are those of this process's executable, and never when it
// names none (a locked guard).
func TestCallerIsManager(t *testing.T) {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &self); err != nil {
		t.Fatal(err)
	}
	k := keyOf(&self)
	for _, tc := range []struct {
		name string
		st   State
		want bool
	}{
		{"this executable", State{ManagerDev: devString(k.Dev), ManagerInode: k.Ino}, true},
		{"another inode", State{ManagerDev: devString(k.Dev), ManagerInode: k.Ino + 1}, false},
		{"another device", State{ManagerDev: devString(k.Dev + 1), ManagerInode: k.Ino}, false},
		{"none (locked)", State{Locked: true}, false},
	} {
		if got, err := tc.st.CallerIsManager(); err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}
