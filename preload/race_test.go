package preload_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/preload"
)

// TestSymlinkSwapCannotRedirect is problem 6 of issue 9 for preload: a user
// who owns a directory above the pin root swaps it, in a tight loop, for a
// symlink to a root-only bpffs, while root applies with --prune (which
// clears staging trees and removes trees no manifest names), removes a
// tree and reads the status. The root-only bpffs must stay untouched and
// the status must show only the user's trees.
func TestSymlinkSwapCannotRedirect(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "race", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pinAt := func(path string) { testutil.PinClone(t, m, path) }
	trees := []string{"pins/other/m", "pins/@staging/left/m"}

	// The root-only bpffs, where a redirected apply would do its damage.
	victim := filepath.Join(testutil.PublicDir(t), "bpf")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", victim, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(victim, unix.MNT_DETACH) })
	for _, p := range append(trees, "pins/secret/m") {
		pinAt(filepath.Join(victim, p))
	}

	lab := testutil.NewSymlinkLab(t, testutil.PublicDir(t))
	lab.Symlink(t, "to-victim", filepath.Dir(victim))
	own := func() {
		for _, p := range trees {
			pinAt(lab.At(p))
		}
	}
	own()
	root := filepath.Join(lab.BPFFS, "pins")
	opts := preload.Options{Root: root, Prune: true}

	stop := lab.Swap(t, "to-victim")
	defer stop()
	for _, tc := range []struct {
		name string
		op   func(t *testing.T, round int) error
	}{
		{"apply --prune", func(*testing.T, int) error {
			_, err := preload.Apply(nil, opts)
			return err
		}},
		{"remove", func(*testing.T, int) error { return preload.Remove("other", opts) }},
		{"status", func(t *testing.T, round int) error {
			states, err := preload.Status(nil, opts)
			for _, s := range states {
				if s.Name == "secret" {
					t.Fatalf("status, round %d: reported %s of the root-only bpffs", round, s.Name)
				}
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each operation on its own: a victim an earlier one spoiled is
			// made whole again.
			for _, p := range append(trees, "pins/secret/m") {
				pinAt(filepath.Join(victim, p))
			}
			done, refused := 0, 0
			end := time.Now().Add(2 * time.Second)
			for i := 0; time.Now().Before(end); i++ {
				if err := tc.op(t, i); err != nil {
					refused++
				} else {
					done++
				}
				for _, p := range append(trees, "pins/secret/m") {
					if _, err := os.Lstat(filepath.Join(victim, p)); err != nil {
						t.Fatalf("%s, round %d: the root-only bpffs lost %s: %v", tc.name, i, p, err)
					}
				}
				own()
			}
			t.Logf("%s: %d done on the user's bpffs, %d refused", tc.name, done, refused)
		})
	}
	t.Logf("%d swaps", stop())
}
