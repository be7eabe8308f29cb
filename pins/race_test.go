package pins_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/pins"
)

// raceTime bounds each operation's run against the swapper.
const raceTime = 2 * time.Second

// pinClone pins a new reference of m at path, making directories on the
// way.
func pinClone(t *testing.T, m *ebpf.Map, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Pin(path); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatalf("pin %s: %v", path, err)
	}
}

// victimFS mounts a root-only bpffs (mode 0700) and pins, at each name, a
// reference to m.
func victimFS(t *testing.T, m *ebpf.Map, names ...string) string {
	t.Helper()
	dir := filepath.Join(testutil.PublicDir(t), "bpf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	for _, n := range names {
		pinClone(t, m, filepath.Join(dir, n))
	}
	return dir
}

// TestSymlinkSwapCannotRedirect is problem 6 of issue 9: a user who owns a
// directory above a bpffs swaps it, in a tight loop, for a symlink to a
// root-only bpffs and for one whose bpf leads to /etc, while root unpins,
// lists and renames on the user's bpffs. The root-only bpffs must stay
// untouched, and the listing must hold nothing but the user's bpffs.
func TestSymlinkSwapCannotRedirect(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "race", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	victim := victimFS(t, m, "tree/m", "a", "secret")
	lab := testutil.NewSymlinkLab(t, testutil.PublicDir(t))
	// evil/bpf -> /etc: the way to make root's walk read /etc.
	if err := os.Mkdir(filepath.Join(lab.Dir, "evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(lab.Dir, "evil"), testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	lab.Symlink(t, "evil/bpf", "/etc")
	lab.Symlink(t, "to-victim", filepath.Dir(victim))
	lab.Symlink(t, "to-etc", filepath.Join(lab.Dir, "evil"))

	own := func() {
		pinClone(t, m, lab.At("tree/m"))
		if _, err := os.Lstat(lab.At("b")); err == nil {
			if err := os.Rename(lab.At("b"), lab.At("a")); err != nil {
				t.Fatal(err)
			}
		}
		pinClone(t, m, lab.At("a"))
	}
	own()
	victimIntact := func(t *testing.T, op string, i int) {
		t.Helper()
		for _, n := range []string{"tree", "tree/m", "a", "secret"} {
			if _, err := os.Lstat(filepath.Join(victim, n)); err != nil {
				t.Fatalf("%s, round %d: the root-only bpffs lost %s: %v", op, i, n, err)
			}
		}
		if _, err := os.Lstat(filepath.Join(victim, "b")); err == nil {
			t.Fatalf("%s, round %d: a rename reached the root-only bpffs", op, i)
		}
	}
	// What the user's bpffs holds: ours, and what the kernel put there
	// (maps.debug and progs.debug on some kernels).
	allowed := map[string]bool{lab.BPFFS: true}
	for _, n := range []string{"tree", "tree/m", "a", "b"} {
		allowed[filepath.Join(lab.BPFFS, n)] = true
	}
	ents, err := os.ReadDir(lab.At(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		allowed[filepath.Join(lab.BPFFS, e.Name())] = true
	}

	stop := lab.Swap(t, "to-victim", "to-etc")
	for _, tc := range []struct {
		name string
		op   func(t *testing.T, round int) error
	}{
		{"unpin -r", func(*testing.T, int) error {
			return pins.Unpin(filepath.Join(lab.BPFFS, "tree"), pins.UnpinOptions{Recursive: true})
		}},
		{"ls", func(t *testing.T, round int) error {
			return pins.List([]string{lab.BPFFS}, pins.Options{Dirs: true}, func(e *pins.Entry) error {
				if !allowed[e.Path] {
					t.Fatalf("ls, round %d: listed %s (%s), which is not on the user's bpffs", round, e.Path, e.Kind)
				}
				return nil
			})
		}},
		{"mv", func(*testing.T, int) error {
			return pins.Rename(filepath.Join(lab.BPFFS, "a"), filepath.Join(lab.BPFFS, "b"), pins.RenameOptions{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each operation on its own: a victim an earlier one spoiled is
			// made whole again.
			for _, n := range []string{"tree/m", "a", "secret"} {
				pinClone(t, m, filepath.Join(victim, n))
			}
			os.Remove(filepath.Join(victim, "b"))
			done, refused := 0, map[string]int{}
			end := time.Now().Add(raceTime)
			for i := 0; time.Now().Before(end); i++ {
				if err := tc.op(t, i); err != nil {
					refused[refusal(err)]++
				} else {
					done++
				}
				victimIntact(t, tc.name, i)
				own()
			}
			t.Logf("%s: %d done on the user's bpffs, refused: %v", tc.name, done, refused)
		})
	}
	t.Logf("%d swaps", stop())
}

// refusal names the sentinel an error wraps, for the log.
func refusal(err error) string {
	for _, s := range []error{pins.ErrSymlink, pins.ErrNotBPFFS, pins.ErrMountChanged, os.ErrNotExist} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return err.Error()
}

// TestSymlinkedPathRefused: a path with a symlink in any component is
// refused, with an error that names the path and says why.
func TestSymlinkedPathRefused(t *testing.T) {
	testutil.RequireRoot(t)
	root := testutil.MountBPFFS(t)
	if err := os.Mkdir(root+"/dir", 0o755); err != nil {
		t.Fatal(err)
	}
	base := testutil.PublicDir(t)
	above := filepath.Join(base, "link")
	if err := os.Symlink(root, above); err != nil {
		t.Fatal(err)
	}
	inside := root + "/alias"
	if err := os.Symlink("dir", inside); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	for _, tc := range []struct {
		name, path, link string
	}{
		{"above the mount", above + "/dir/x", above},
		{"the mount itself", above, above},
		{"inside the mount", inside + "/x", inside},
	} {
		for _, op := range []struct {
			name string
			do   func(string) error
		}{
			{"pin", func(p string) error { return pins.Pin(m.FD(), p, pins.PinOptions{Parents: true}) }},
			{"unpin", func(p string) error { return pins.Unpin(p, pins.UnpinOptions{Recursive: true}) }},
			{"rename", func(p string) error { return pins.Rename(p, root+"/y", pins.RenameOptions{}) }},
			{"ls", func(p string) error {
				return pins.List([]string{p}, pins.Options{}, func(*pins.Entry) error { return nil })
			}},
		} {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				err := op.do(tc.path)
				if !errors.Is(err, pins.ErrSymlink) {
					t.Fatalf("%s %s: got %v, want %v", op.name, tc.path, err, pins.ErrSymlink)
				}
				if msg := err.Error(); !strings.Contains(msg, tc.link) || !strings.Contains(msg, "not followed") {
					t.Errorf("message does not name %s and say symlinks are not followed: %s", tc.link, msg)
				}
			})
		}
	}
}

// TestDirConfines: paths given to a Dir stay below it, on its mount, and
// never through a symlink.
func TestDirConfines(t *testing.T) {
	testutil.RequireRoot(t)
	root := testutil.MountBPFFS(t)
	if err := os.MkdirAll(root+"/top/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", root+"/top/alias"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root+"/top/mnt", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root+"/top/mnt", "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(root+"/top/mnt", unix.MNT_DETACH)
	d, err := pins.OpenDir(root+"/top", pins.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name string
		want error
	}{
		{"../top", pins.ErrEscape},
		{"sub/../../x", pins.ErrEscape},
		{"alias/x", pins.ErrSymlink},
		{"mnt/x", pins.ErrEscape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.MkdirAll(tc.name); !errors.Is(err, tc.want) {
				t.Errorf("MkdirAll: got %v, want %v", err, tc.want)
			}
			if _, err := d.Lstat(tc.name); !errors.Is(err, tc.want) {
				t.Errorf("Lstat: got %v, want %v", err, tc.want)
			}
			if err := d.Unpin(tc.name, pins.UnpinOptions{Recursive: true}); !errors.Is(err, tc.want) {
				t.Errorf("Unpin: got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := d.Lstat("missing/x"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat of a missing path: got %v, want %v", err, os.ErrNotExist)
	}
	if _, err := d.Lstat("/etc"); err == nil {
		t.Error("an absolute path was taken")
	}
	if err := d.Unpin(".", pins.UnpinOptions{Recursive: true}); err == nil {
		t.Error("Unpin(\".\") removed the directory the Dir holds")
	}
	if _, err := os.Stat(root + "/top/sub"); err != nil {
		t.Fatal(err)
	}
	// ls reports the mount point and does not walk into it.
	var got []string
	if err := d.List(".", pins.Options{}, func(e *pins.Entry) error {
		got = append(got, e.Path+" "+string(e.Kind)+" "+e.Error)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !strings.Contains(got[1], "top/mnt dir another filesystem") {
		t.Errorf("List: %q, want the symlink and the mount point", got)
	}
}
