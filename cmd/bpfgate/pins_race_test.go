package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestPinCommandsResistSymlinkSwap runs problem 6 of issue 9 through the
// command: while a user who owns a directory above a bpffs swaps it for a
// symlink to a root-only bpffs (and to one whose bpf is /etc) in a tight
// loop, root's `bpfgate unpin -r`, `ls` and `mv` on the user's bpffs never
// touch the root-only one, and ls lists nothing else.
func TestPinCommandsResistSymlinkSwap(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "race", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pinAt := func(path string) { testutil.PinClone(t, m, path) }
	names := []string{"tree/m", "a", "secret"}
	victim := filepath.Join(testutil.PublicDir(t), "bpf")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", victim, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(victim, unix.MNT_DETACH) })
	restoreVictim := func() {
		for _, n := range names {
			pinAt(filepath.Join(victim, n))
		}
		os.Remove(filepath.Join(victim, "b"))
	}
	restoreVictim()

	lab := testutil.NewSymlinkLab(t, testutil.PublicDir(t))
	evil := filepath.Join(lab.Dir, "evil")
	if err := os.Mkdir(evil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(evil, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	lab.Symlink(t, "evil/bpf", "/etc")
	lab.Symlink(t, "to-victim", filepath.Dir(victim))
	lab.Symlink(t, "to-etc", evil)
	own := func() {
		pinAt(lab.At("tree/m"))
		if _, err := os.Lstat(lab.At("b")); err == nil {
			if err := os.Rename(lab.At("b"), lab.At("a")); err != nil {
				t.Fatal(err)
			}
		}
		pinAt(lab.At("a"))
	}
	own()
	allowed := map[string]bool{}
	ents, err := os.ReadDir(lab.At(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		allowed[e.Name()] = true
	}
	allowed["tree/m"], allowed["b"] = true, true

	// Symlinks are refused, and the command says so.
	if r := bpfgate(t, "unpin", "-r", filepath.Join(lab.Dir, "to-victim", "bpf", "tree")); r.code == 0 || !strings.Contains(r.stderr, "not followed") {
		t.Errorf("unpin through a symlink: exit %d, stderr %q; want a refusal that says symlinks are not followed", r.code, r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(victim, "tree")); err != nil {
		t.Fatalf("unpin through a symlink reached the root-only bpffs: %v", err)
	}

	stop := lab.Swap(t, "to-victim", "to-etc")
	defer stop()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unpin -r", []string{"unpin", "-r", filepath.Join(lab.BPFFS, "tree")}},
		{"ls", []string{"--json", "ls", lab.BPFFS}},
		{"mv", []string{"mv", filepath.Join(lab.BPFFS, "a"), filepath.Join(lab.BPFFS, "b")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restoreVictim()
			done := 0
			end := time.Now().Add(3 * time.Second)
			for i := 0; i < 300 && time.Now().Before(end); i++ {
				r := bpfgate(t, tc.args...)
				if r.code == 0 {
					done++
				}
				if tc.name == "ls" && r.code == 0 {
					var got []struct{ Path, Kind string }
					if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
						t.Fatalf("ls --json: %v: %s", err, r.stdout)
					}
					for _, e := range got {
						rel, err := filepath.Rel(lab.BPFFS, e.Path)
						if err != nil || !allowed[rel] && !(rel == "." && e.Kind == "dir") {
							t.Fatalf("ls, round %d: listed %s (%s), which is not on the user's bpffs", i, e.Path, e.Kind)
						}
					}
				}
				for _, n := range names {
					if _, err := os.Lstat(filepath.Join(victim, n)); err != nil {
						t.Fatalf("%s, round %d: the root-only bpffs lost %s: %v", tc.name, i, n, err)
					}
				}
				if _, err := os.Lstat(filepath.Join(victim, "b")); err == nil {
					t.Fatalf("%s, round %d: a rename reached the root-only bpffs", tc.name, i)
				}
				own()
			}
			t.Logf("%s: %d runs done on the user's bpffs", tc.name, done)
		})
	}
	t.Logf("%d swaps", stop())
}
