package preload_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/pins"
	"github.com/bpfgate/bpfgate/preload"
)

var hooksObject, _ = filepath.Abs("testdata/hooks.bpf.o")

// ourPrograms are the programs of testdata/hooks.bpf.o that every kernel
// with BPF tokens can attach; no other test loads programs of these names.
// kprobe_count and fentry_count depend on the kernel's configuration and
// have a test of their own.
var ourPrograms = []string{"xdp_count", "tcx_count", "tp_count", "cgroup_count", "iter_count"}

var tracingPrograms = []string{"kprobe_count", "fentry_count"}

// env is what one test's manifests attach to: a veth interface and a
// cgroup of its own.
type env struct {
	root, dir, iface, cgroup string
}

func newEnv(t *testing.T) *env {
	testutil.RequireRoot(t)
	e := &env{root: testutil.MountBPFFS(t) + "/bpfgate", dir: t.TempDir()}
	roots = append(roots, e.root)
	e.iface = fmt.Sprintf("bgt%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "link", "add", e.iface, "type", "veth", "peer", "name", e.iface+"p").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", e.iface).Run() })
	if out, err := exec.Command("ip", "link", "set", e.iface, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set up: %v: %s", err, out)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil || len(mounts) == 0 {
		testutil.Skip(t, "no cgroup v2 mount")
	}
	e.cgroup = filepath.Join(mounts[0].Mountpoint, fmt.Sprintf("bpfgate-test-%d", os.Getpid()))
	if err := os.Mkdir(e.cgroup, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(e.cgroup) })
	return e
}

// manifest writes NAME.yaml attaching every program of the hooks object.
func (e *env) manifest(t *testing.T, name, extra string) {
	t.Helper()
	body := fmt.Sprintf(`object: %s
programs:
  - name: xdp_count
    interface: %s
  - name: tcx_count
    interface: %s
  - name: tp_count
  - name: cgroup_count
    cgroup: %s
  - name: iter_count
  - name: unattached
    attach: none
maps:
  - name: counts
    keep: true
%s`, hooksObject, e.iface, e.iface, e.cgroup, extra)
	if err := os.WriteFile(filepath.Join(e.dir, name+".yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *env) apply(t *testing.T) []preload.Result {
	t.Helper()
	ms, err := preload.ReadDir(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := preload.Apply(ms, preload.Options{Root: e.root})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// tree lists the pins below root/name by path relative to it.
func (e *env) tree(t *testing.T, name string) map[string]*pins.Entry {
	t.Helper()
	out := map[string]*pins.Entry{}
	err := pins.List([]string{filepath.Join(e.root, name)}, pins.Options{}, func(en *pins.Entry) error {
		rel, _ := filepath.Rel(filepath.Join(e.root, name), en.Path)
		out[rel] = en
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// systemLinks maps each of our program names to the ids of every link in
// the system that holds one of this process's programs of that name. Other
// checkouts may run these tests at the same time, with the same object: a
// program is this process's if it was ever pinned below one of its roots
// (Apply pins every program before it attaches it).
func systemLinks(t *testing.T) map[string][]uint32 {
	t.Helper()
	for _, root := range roots {
		recordPrograms(t, root)
	}
	var err error
	for range 20 {
		var out map[string][]uint32
		if out, err = listLinks(); err == nil {
			return out
		}
		// EAGAIN: a link someone is creating at this moment has an id but
		// cannot be opened yet.
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func listLinks() (map[string][]uint32, error) {
	out := map[string][]uint32{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || !ourProgramIDs[uint32(info.Program)] {
			continue
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue
		}
		pi, err := p.Info()
		p.Close()
		if err == nil && (slices.Contains(ourPrograms, pi.Name) || slices.Contains(tracingPrograms, pi.Name)) {
			out[pi.Name] = append(out[pi.Name], uint32(info.ID))
		}
	}
	return out, it.Err()
}

// roots are the pin roots of this process's envs; ourProgramIDs the ids of
// every program seen pinned below them (ids are not reused).
var (
	roots         []string
	ourProgramIDs = map[uint32]bool{}
)

// recordPrograms adds the programs pinned below root, staging included.
func recordPrograms(t *testing.T, root string) {
	t.Helper()
	if _, err := os.Stat(root); err != nil {
		return
	}
	err := pins.List([]string{root}, pins.Options{}, func(e *pins.Entry) error {
		if e.Program != nil {
			ourProgramIDs[e.ID] = true
		}
		if e.Link != nil {
			ourProgramIDs[e.Link.ProgramID] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// linksAfterRemove is systemLinks once the kernel has released what a
// Remove unpinned: a link whose last pin goes is freed after an RCU grace
// period and a work item (detached links included), so it waits up to 2s.
func linksAfterRemove(t *testing.T) map[string][]uint32 {
	t.Helper()
	sys := systemLinks(t)
	for i := 0; i < 100 && len(sys) != 0; i++ {
		time.Sleep(20 * time.Millisecond)
		sys = systemLinks(t)
	}
	return sys
}

// converged checks that name is applied as written: every program attached
// exactly once, by the link pinned in its tree, and nothing staged.
func (e *env) converged(t *testing.T, name string) map[string]*pins.Entry {
	t.Helper()
	tree := e.tree(t, name)
	sys := systemLinks(t)
	for _, p := range ourPrograms {
		l := tree["links/"+p]
		if l == nil {
			t.Errorf("%s: links/%s not pinned", name, p)
			continue
		}
		if got := sys[p]; len(got) != 1 || got[0] != l.ID {
			t.Errorf("%s: program %s is held by links %v, want exactly the pinned link %d", name, p, got, l.ID)
		}
		if prog := tree["progs/"+p]; prog == nil || prog.ID != l.Link.ProgramID {
			t.Errorf("%s: link %s runs program %d, not the pinned one %+v", name, p, l.Link.ProgramID, prog)
		}
	}
	if staged, _ := os.ReadDir(filepath.Join(e.root, "@staging")); len(staged) != 0 {
		t.Errorf("staging not empty: %v", staged)
	}
	return tree
}

func TestApplyReapplyReplaceRemove(t *testing.T) {
	e := newEnv(t)
	e.manifest(t, "hooks", "")
	res := e.apply(t)
	if len(res) != 1 || res[0].Action != preload.Created {
		t.Fatalf("first apply: %+v", res)
	}
	first := e.converged(t, "hooks")
	ifi, _ := net.InterfaceByName(e.iface)
	if l := first["links/xdp_count"]; l.Type != "xdp" || l.Link.Ifindex != uint32(ifi.Index) {
		t.Errorf("xdp link: %+v", l.Link)
	}
	if l := first["links/tcx_count"]; l.Type != "tcx" || l.Link.AttachType != "tcx_ingress" || l.Link.Ifindex != uint32(ifi.Index) {
		t.Errorf("tcx link: %s %+v", l.Type, l.Link)
	}
	if l := first["links/iter_count"]; l.Type != "iter" || l.Link.Target != "bpf_map" {
		t.Errorf("iter link: %+v", l.Link)
	}
	if first["progs/unattached"] == nil || first["progs/unattached"].Program.Attached {
		t.Errorf("attach: none should pin the program unattached: %+v", first["progs/unattached"])
	}
	if first["progs/fentry_count"] != nil {
		t.Errorf("a program the manifest does not list was loaded")
	}

	// The hooks fire: the tracepoint on a real syscall, the iterator when
	// read.
	syscall.Getppid()
	if _, err := os.ReadFile(filepath.Join(e.root, "hooks/links/iter_count")); err != nil {
		t.Fatal(err)
	}
	counts, err := ebpf.LoadPinnedMap(filepath.Join(e.root, "hooks/maps/counts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer counts.Close()
	for slot, what := range map[uint32]string{2: "tracepoint", 6: "iterator"} {
		var v uint64
		if err := counts.Lookup(slot, &v); err != nil || v == 0 {
			t.Errorf("%s did not count (%d, %v)", what, v, err)
		}
	}

	// Re-apply: nothing reloaded.
	if res := e.apply(t); res[0].Action != preload.Unchanged {
		t.Fatalf("re-apply: %+v", res)
	}
	again := e.converged(t, "hooks")
	for _, p := range ourPrograms {
		if again["progs/"+p].ID != first["progs/"+p].ID || again["links/"+p].ID != first["links/"+p].ID {
			t.Errorf("re-apply reloaded %s", p)
		}
	}

	// Change the manifest: replaced, map and its data kept, XDP/TCX/cgroup
	// links updated in place.
	if err := counts.Put(uint32(7), uint64(4242)); err != nil {
		t.Fatal(err)
	}
	e.manifest(t, "hooks", "# changed\n")
	res = e.apply(t)
	if res[0].Action != preload.Replaced || !slices.Equal(res[0].Kept, []string{"counts"}) {
		t.Fatalf("apply after change: %+v", res)
	}
	third := e.converged(t, "hooks")
	if third["maps/counts"].ID != first["maps/counts"].ID {
		t.Errorf("counts map was recreated (%d -> %d)", first["maps/counts"].ID, third["maps/counts"].ID)
	}
	var v uint64
	if err := counts.Lookup(uint32(7), &v); err != nil || v != 4242 {
		t.Errorf("counts[7] = %d, %v after upgrade; want 4242", v, err)
	}
	for _, p := range ourPrograms {
		if third["progs/"+p].ID == first["progs/"+p].ID {
			t.Errorf("%s was not reloaded", p)
		}
		inPlace := p == "xdp_count" || p == "tcx_count" || p == "cgroup_count"
		if (third["links/"+p].ID == first["links/"+p].ID) != inPlace {
			t.Errorf("%s: link %d -> %d; updated in place should be %v", p, first["links/"+p].ID, third["links/"+p].ID, inPlace)
		}
	}

	// Status agrees, then remove leaves nothing.
	ms, _ := preload.ReadDir(e.dir)
	st, err := preload.Status(ms, preload.Options{Root: e.root})
	if err != nil || len(st) != 1 || st[0].State != preload.StateApplied {
		t.Errorf("status: %+v %v", st, err)
	}
	if err := preload.Remove("hooks", preload.Options{Root: e.root}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(e.root, "hooks")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tree left after remove: %v", err)
	}
	if sys := linksAfterRemove(t); len(sys) != 0 {
		t.Errorf("links left after remove: %v", sys)
	}
	if err := preload.Remove("hooks", preload.Options{Root: e.root}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second remove = %v, want ErrNotExist", err)
	}
}

// killSteps are the points at which the kill test stops Apply: every step
// of building and swapping a tree, for a cold apply and for a replacement.
var killSteps = []string{"cleared-staging", "cleaned", "loaded", "pinned-maps", "pinned-progs",
	"attached:tp_count", "pinned-link:tp_count", "attached:iter_count", "pinned-link:iter_count",
	"digest", "swapped", "removed-old"}

func TestApplyConvergesAfterKill(t *testing.T) {
	e := newEnv(t)
	for _, upgrade := range []bool{false, true} {
		steps := append([]string{}, killSteps...)
		if upgrade {
			steps = append(steps, "updated:xdp_count", "updated:cgroup_count")
		} else {
			steps = append(steps, "attached:xdp_count", "pinned-link:xdp_count")
			steps = slices.DeleteFunc(steps, func(s string) bool { return s == "removed-old" })
		}
		for i, step := range steps {
			name := fmt.Sprintf("kill%d", i)
			if upgrade {
				name = "up" + name
				e.manifest(t, name, "")
				e.apply(t)
				e.manifest(t, name, "# changed\n")
			} else {
				e.manifest(t, name, "")
			}
			e.killApplyAt(t, step)
			res := e.apply(t)
			for _, r := range res {
				if r.Name == name && r.Action == preload.Unchanged && step != "swapped" && step != "removed-old" {
					t.Errorf("upgrade=%v step %s: next apply left %s unchanged", upgrade, step, name)
				}
			}
			e.converged(t, name)
			if err := preload.Remove(name, preload.Options{Root: e.root}); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(e.dir, name+".yaml"))
			if sys := linksAfterRemove(t); len(sys) != 0 {
				t.Fatalf("upgrade=%v step %s: links left after remove: %v", upgrade, step, sys)
			}
		}
	}
}

// killApplyAt runs Apply on e in a child process and SIGKILLs it at step.
func (e *env) killApplyAt(t *testing.T, step string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PRELOAD_TEST_KILL_AT="+step, "PRELOAD_TEST_DIR="+e.dir, "PRELOAD_TEST_ROOT="+e.root)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("apply was not killed at %s: %v: %s", step, err, out)
	}
	// What it pinned goes with the next apply; its programs are this
	// process's all the same.
	recordPrograms(t, e.root)
}

// TestApplyAfterKillWithManifestReverted kills an upgrade after it updated
// the XDP link in place, then puts the old manifest back: the tree's digest
// matches again, but its link runs the dead apply's program until the next
// apply points it back or rebuilds.
func TestApplyAfterKillWithManifestReverted(t *testing.T) {
	e := newEnv(t)
	e.manifest(t, "revert", "")
	e.apply(t)
	e.manifest(t, "revert", "# changed\n")
	e.killApplyAt(t, "updated:xdp_count")
	e.manifest(t, "revert", "")
	e.apply(t)
	e.converged(t, "revert")
	if err := preload.Remove("revert", preload.Options{Root: e.root}); err != nil {
		t.Fatal(err)
	}
}

// TestDiscardedLinksDetach holds the links of a tree as another process
// could (bpftool, a crashed apply's leftover fd), then has Apply or Remove
// discard the tree: the netdev links must be detached at once, not when the
// last holder lets go, or the next XDP attach fails with EBUSY.
func TestDiscardedLinksDetach(t *testing.T) {
	e := newEnv(t)
	hold := func(tree string) map[string]link.Link {
		out := map[string]link.Link{}
		for _, p := range []string{"xdp_count", "tcx_count"} {
			l, err := link.LoadPinnedLink(filepath.Join(e.root, tree, "links", p), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() }) // a second Close is harmless
			out[p] = l
		}
		return out
	}
	detached := func(what string, held map[string]link.Link) {
		t.Helper()
		for p, l := range held {
			info, err := l.Info()
			if err != nil {
				t.Fatal(err)
			}
			if (info.XDP() != nil && info.XDP().Ifindex != 0) || (info.TCX() != nil && info.TCX().Ifindex != 0) {
				t.Errorf("%s: link %s of the discarded tree is still attached", what, p)
			}
			l.Close()
		}
	}

	// A tree a killed apply left in staging, with a fresh XDP link.
	e.manifest(t, "held", "")
	e.killApplyAt(t, "pinned-link:tcx_count")
	held := hold("@staging/held")
	e.apply(t)
	detached("staging tree of a killed apply", held)
	e.converged(t, "held")

	// A removed tree.
	held = hold("held")
	if err := preload.Remove("held", preload.Options{Root: e.root}); err != nil {
		t.Fatal(err)
	}
	detached("removed tree", held)
}

// TestBadManifests puts each bad manifest next to a good one. A manifest
// ReadDir refuses (syntax, names) stops everything before anything is
// loaded; one whose object, programs or targets are wrong fails on its own
// and the good one is applied.
func TestBadManifests(t *testing.T) {
	e := newEnv(t)
	good := fmt.Sprintf("object: %s\nprograms:\n  - name: iter_count\n", hooksObject)
	for _, tc := range []struct {
		name, body, key, want string
		is                    error
		// readDir: ReadDir refuses it, so nothing is applied.
		readDir bool
	}{
		{"unknown-program", fmt.Sprintf("object: %s\nprograms:\n  - name: nope\n", hooksObject), "programs.nope.name", `no program "nope"`, preload.ErrManifest, false},
		{"missing-object", "object: /nonexistent/x.o\n", "object", "no such file", preload.ErrManifest, true},
		{"not-elf", "object: /etc/hostname\n", "object", "not a BPF ELF object", preload.ErrManifest, false},
		{"bad-interface", fmt.Sprintf("object: %s\nprograms:\n  - name: xdp_count\n    interface: nope0\n", hooksObject), "programs.xdp_count.interface", "nope0", preload.ErrTarget, false},
		{"no-interface", fmt.Sprintf("object: %s\nprograms:\n  - name: xdp_count\n", hooksObject), "programs.xdp_count.interface", "missing", preload.ErrManifest, false},
		{"bad-tracepoint", fmt.Sprintf("object: %s\nprograms:\n  - name: tp_count\n    target: nope/nope\n", hooksObject), "programs.tp_count.target", "nope/nope", preload.ErrTarget, false},
		{"bad-fentry", fmt.Sprintf("object: %s\nprograms:\n  - name: fentry_count\n    target: no_such_function_x\n", hooksObject), "programs.fentry_count.target", "no_such_function_x", preload.ErrTarget, false},
		{"bad-cgroup", fmt.Sprintf("object: %s\nprograms:\n  - name: cgroup_count\n    cgroup: /tmp\n", hooksObject), "programs.cgroup_count.cgroup", "not a cgroup v2", preload.ErrTarget, false},
		{"wrong-hook", fmt.Sprintf("object: %s\nprograms:\n  - name: xdp_count\n    attach: tracepoint\n", hooksObject), "programs.xdp_count.attach", "cannot attach as tracepoint", preload.ErrManifest, false},
		{"unknown-hook", fmt.Sprintf("object: %s\nprograms:\n  - name: xdp_count\n    attach: xdpp\n", hooksObject), "programs.xdp_count.attach", "unknown hook", preload.ErrManifest, false},
		{"no-hook", fmt.Sprintf("object: %s\nprograms:\n  - name: unattached\n", hooksObject), "programs.unattached.attach", "no hook", preload.ErrManifest, false},
		{"unknown-map", fmt.Sprintf("object: %s\nmaps:\n  - name: nope\n", hooksObject), "maps.nope.name", `no map "nope"`, preload.ErrManifest, false},
		{"duplicate-program", fmt.Sprintf("object: %s\nprograms:\n  - name: iter_count\n  - name: iter_count\n", hooksObject), "programs[1].name", "listed twice", preload.ErrDuplicate, true},
		{"duplicate-name", fmt.Sprintf("name: good\nobject: %s\n", hooksObject), "name", "also the name of", preload.ErrDuplicate, true},
		{"escape", fmt.Sprintf("name: ../../etc\nobject: %s\n", hooksObject), "name", "may not contain", preload.ErrEscape, true},
		{"dotted", fmt.Sprintf("name: a.b\nobject: %s\n", hooksObject), "name", "refuses dots", preload.ErrManifest, true},
		{"long-name", fmt.Sprintf("name: %s\nobject: %s\n", strings.Repeat("n", 65), hooksObject), "name", "letters", preload.ErrManifest, true},
		{"odd-name", fmt.Sprintf("name: a@b\nobject: %s\n", hooksObject), "name", "letters", preload.ErrManifest, true},
		{"unknown-key", fmt.Sprintf("object: %s\nprogram:\n  - name: x\n", hooksObject), "program", "unknown key", preload.ErrManifest, true},
		{"no-object", "order: 3\n", "object", "missing", preload.ErrManifest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(good), 0o644)
			file := filepath.Join(dir, tc.name+".yaml")
			os.WriteFile(file, []byte(tc.body), 0o644)
			ms, err := preload.ReadDir(dir)
			var res []preload.Result
			if err == nil {
				if tc.readDir {
					t.Fatal("ReadDir accepted it")
				}
				res, err = preload.Apply(ms, preload.Options{Root: e.root})
			} else if !tc.readDir {
				t.Fatalf("ReadDir refused it: %v", err)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !errors.Is(err, tc.is) || !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.key+":") ||
				(!strings.Contains(msg, file) && tc.name != "duplicate-name") {
				t.Errorf("error %q: want errors.Is %v, the file, key %q and %q", msg, tc.is, tc.key, tc.want)
			}
			_, goodErr := os.Lstat(filepath.Join(e.root, "good"))
			if tc.readDir {
				if !errors.Is(goodErr, os.ErrNotExist) {
					t.Errorf("the good manifest was applied although ReadDir failed")
				}
				return
			}
			actions := map[string]preload.Action{}
			for _, r := range res {
				actions[r.Name] = r.Action
				if r.Action == preload.Failed && !strings.Contains(r.Why, tc.want) {
					t.Errorf("result %+v: want why %q", r, tc.want)
				}
			}
			if len(res) != 2 || actions["good"] != preload.Created || actions[tc.name] != preload.Failed {
				t.Errorf("results %+v: want good created and %s failed", res, tc.name)
			}
			if goodErr != nil {
				t.Errorf("the good manifest was not applied: %v", goodErr)
			}
			if _, err := os.Lstat(filepath.Join(e.root, tc.name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the bad manifest left a tree: %v", err)
			}
			if err := preload.Remove("good", preload.Options{Root: e.root}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if sys := linksAfterRemove(t); len(sys) != 0 {
		t.Errorf("links exist after the bad manifests and a remove of the good: %v", sys)
	}
}

// TestTracingHooksWhereKernelAllows attaches kprobe and fentry programs
// where the kernel allows them, and otherwise checks that Apply says why and
// leaves nothing behind. (The kernels of this project's machines have no
// CONFIG_KPROBES and refuse fentry under lockdown=integrity.)
func TestTracingHooksWhereKernelAllows(t *testing.T) {
	e := newEnv(t)
	for _, prog := range tracingPrograms {
		body := fmt.Sprintf("object: %s\nprograms:\n  - name: %s\n", hooksObject, prog)
		os.WriteFile(filepath.Join(e.dir, "tracing.yaml"), []byte(body), 0o644)
		ms, err := preload.ReadDir(e.dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = preload.Apply(ms, preload.Options{Root: e.root})
		if err == nil {
			t.Logf("%s: attached", prog)
			tree := e.tree(t, "tracing")
			if l := tree["links/"+prog]; l == nil || systemLinks(t)[prog][0] != l.ID {
				t.Errorf("%s: not attached by its pinned link", prog)
			}
			if err := preload.Remove("tracing", preload.Options{Root: e.root}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Logf("%s: refused: %v", prog, err)
		if !strings.Contains(err.Error(), prog) {
			t.Errorf("%s: the error does not name the program: %v", prog, err)
		}
		if _, serr := os.Lstat(filepath.Join(e.root, "tracing")); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%s: a tree was left after a failed apply", prog)
		}
		if staged, _ := os.ReadDir(filepath.Join(e.root, "@staging")); len(staged) != 0 {
			t.Errorf("%s: staging left after a failed apply: %v", prog, staged)
		}
	}
	if sys := linksAfterRemove(t); len(sys) != 0 {
		t.Errorf("links left: %v", sys)
	}
}

func TestIncompatibleKeptMapRefused(t *testing.T) {
	e := newEnv(t)
	e.manifest(t, "hooks", "")
	e.apply(t)
	before := e.tree(t, "hooks")
	// Swap the pinned map for one of another shape, as an older object
	// version would have left it.
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 16, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	path := filepath.Join(e.root, "hooks/maps/counts")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := other.Pin(path); err != nil {
		t.Fatal(err)
	}
	e.manifest(t, "hooks", "# changed\n")
	ms, _ := preload.ReadDir(e.dir)
	_, err = preload.Apply(ms, preload.Options{Root: e.root})
	if !errors.Is(err, preload.ErrIncompatibleMap) || !strings.Contains(err.Error(), "remove object hooks") {
		t.Fatalf("apply = %v, want ErrIncompatibleMap naming the way out", err)
	}
	after := e.tree(t, "hooks")
	for _, p := range ourPrograms {
		if after["links/"+p].ID != before["links/"+p].ID || after["progs/"+p].ID != before["progs/"+p].ID {
			t.Errorf("%s changed although the apply was refused", p)
		}
	}
	if sys := systemLinks(t); len(sys["tp_count"]) != 1 {
		t.Errorf("links after a refused replace: %v", sys)
	}
	preload.Remove("hooks", preload.Options{Root: e.root})
}

func TestMain(m *testing.M) {
	if step := os.Getenv("PRELOAD_TEST_KILL_AT"); step != "" {
		ms, err := preload.ReadDir(os.Getenv("PRELOAD_TEST_DIR"))
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		_, err = preload.Apply(ms, preload.Options{Root: os.Getenv("PRELOAD_TEST_ROOT"), Hook: func(s string) {
			if s == step {
				unix.Kill(os.Getpid(), unix.SIGKILL)
				select {}
			}
		}})
		fmt.Println("apply finished without reaching", step, err)
		os.Exit(3)
	}
	// A fuzz worker runs this binary again while its coordinator holds the
	// lock; it attaches nothing and needs no tracefs.
	if slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.fuzzworker") }) {
		os.Exit(m.Run())
	}
	if os.Geteuid() == 0 {
		// Serialise the preload tests of every checkout on this machine:
		// systemLinks counts links by program name, which a concurrent run
		// of these tests adds to, and withTracefs unmounts what it mounted.
		var err error
		if lockFile, err = os.OpenFile(testLock, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			err = unix.Flock(int(lockFile.Fd()), unix.LOCK_EX)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "lock", testLock, err)
			os.Exit(1)
		}
	}
	os.Exit(withTracefs(m.Run))
}

const testLock = "/run/bpfgate-preload-test.lock"

// lockFile holds the lock until the process exits; a global, so that no
// finalizer closes it earlier.
var lockFile *os.File

// withTracefs mounts tracefs where the kernel expects it if nothing is
// there (containers and minimal machines), for the tracepoint tests.
func withTracefs(run func() int) int {
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(dir + "/events"); err == nil || os.Geteuid() != 0 {
		return run()
	}
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		return run()
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	return run()
}
