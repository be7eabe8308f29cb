package pins_test

import (
	"encoding/json"
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

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/pins"
)

// objects is a small real world on one bpffs: a map, a socket filter that
// nothing attaches, an XDP program attached to lo by a link, and an
// iterator link.
type objects struct {
	root              string
	counts            *ebpf.Map
	filter, xdp, iter *ebpf.Program
	xdpLink, iterLink link.Link
}

func program(t *testing.T, spec *ebpf.ProgramSpec) *ebpf.Program {
	t.Helper()
	spec.License = "GPL"
	spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	if spec.Type == ebpf.XDP {
		spec.Instructions[0] = asm.Mov.Imm(asm.R0, 2) // XDP_PASS
	}
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		t.Fatalf("load %s: %v", spec.Name, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func pin(t *testing.T, obj interface{ Pin(string) error }, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := obj.Pin(path); err != nil {
		t.Fatalf("pin %s: %v", path, err)
	}
}

func setup(t *testing.T) *objects {
	testutil.RequireRoot(t)
	o := &objects{root: testutil.MountBPFFS(t)}
	var err error
	o.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "counts", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.counts.Close() })
	o.filter = program(t, &ebpf.ProgramSpec{Name: "filter", Type: ebpf.SocketFilter})
	o.xdp = program(t, &ebpf.ProgramSpec{Name: "pass", Type: ebpf.XDP})
	o.iter = program(t, &ebpf.ProgramSpec{Name: "dump", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "bpf_map"})
	// A veth of the test's own: lo takes one XDP program, and other tests
	// (and the preload example) want it.
	lo := veth(t)
	if o.xdpLink, err = link.AttachXDP(link.XDPOptions{Program: o.xdp, Interface: lo.Index, Flags: link.XDPGenericMode}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.xdpLink.Close() })
	if o.iterLink, err = link.AttachIter(link.IterOptions{Program: o.iter}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.iterLink.Close() })

	pin(t, o.counts, o.root+"/app/maps/counts")
	// cilium/ebpf moves a pinned map when pinned again; a clone pins twice.
	again, err := o.counts.Clone()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	pin(t, again, o.root+"/deep/a/b/c/counts")
	pin(t, o.filter, o.root+"/app/progs/filter")
	pin(t, o.xdp, o.root+"/app/progs/pass")
	pin(t, o.xdpLink, o.root+"/app/links/pass")
	pin(t, o.iterLink, o.root+"/app/links/dump")
	if err := os.Symlink("app/maps/counts", o.root+"/alias"); err != nil {
		t.Fatal(err)
	}
	return o
}

func veth(t *testing.T) *net.Interface {
	t.Helper()
	name := fmt.Sprintf("bgp%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "link", "add", name, "type", "veth", "peer", "name", name+"p").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return ifi
}

func list(t *testing.T, opts pins.Options, roots ...string) map[string]*pins.Entry {
	t.Helper()
	out := map[string]*pins.Entry{}
	err := pins.List(roots, opts, func(e *pins.Entry) error {
		out[e.Path] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// bpftoolShow is what Debian's bpftool reports for an object id.
func bpftoolShow(t *testing.T, kind string, id uint32) map[string]any {
	t.Helper()
	if _, err := exec.LookPath("bpftool"); err != nil {
		testutil.Skip(t, "bpftool not installed (apt-get install bpftool)")
	}
	// bpftool 7.5 exits 255 after printing a link in full on Linux 6.18;
	// the printed object is what counts.
	out, runErr := exec.Command("bpftool", "-j", kind, "show", "id", fmt.Sprint(id)).Output()
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil || v["error"] != nil || v["id"] == nil {
		t.Fatalf("bpftool %s show id %d: %v: %s", kind, id, runErr, out)
	}
	return v
}

func TestListMatchesKernel(t *testing.T) {
	o := setup(t)
	got := list(t, pins.Options{}, o.root+"/app", o.root+"/deep", o.root+"/alias")

	mi, err := o.counts.Info()
	if err != nil {
		t.Fatal(err)
	}
	mid, _ := mi.ID()
	for _, p := range []string{"/app/maps/counts", "/deep/a/b/c/counts"} {
		e := got[o.root+p]
		if e == nil {
			t.Fatalf("%s not listed; got %v", p, keys(got))
		}
		want := pins.Entry{Path: o.root + p, Kind: pins.KindMap, ID: uint32(mid), Type: "hash", Name: "counts",
			Map: &pins.MapDetails{KeySize: mi.KeySize, ValueSize: mi.ValueSize, MaxEntries: mi.MaxEntries, Flags: mi.Flags}}
		checkEntry(t, e, &want)
	}
	bt := bpftoolShow(t, "map", uint32(mid))
	e := got[o.root+"/app/maps/counts"]
	for key, want := range map[string]any{"id": e.ID, "type": e.Type, "name": e.Name, "bytes_key": e.Map.KeySize,
		"bytes_value": e.Map.ValueSize, "max_entries": e.Map.MaxEntries, "flags": e.Map.Flags} {
		if fmt.Sprint(bt[key]) != fmt.Sprint(want) {
			t.Errorf("map %s: bpftool says %v, bpfgate %v", key, bt[key], want)
		}
	}

	xl, err := o.xdpLink.Info()
	if err != nil {
		t.Fatal(err)
	}
	il, err := o.iterLink.Info()
	if err != nil {
		t.Fatal(err)
	}
	for path, tc := range map[string]struct {
		prog  *ebpf.Program
		typ   string
		links []uint32
	}{
		"/app/progs/filter": {o.filter, "socket_filter", nil},
		"/app/progs/pass":   {o.xdp, "xdp", []uint32{uint32(xl.ID)}},
	} {
		pi, err := tc.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := pi.ID()
		want := pins.Entry{Path: o.root + path, Kind: pins.KindProgram, ID: uint32(pid), Type: tc.typ, Name: pi.Name,
			Program: &pins.ProgramDetails{Tag: pi.Tag, Attached: tc.links != nil, Links: tc.links}}
		checkEntry(t, got[o.root+path], &want)
		bt := bpftoolShow(t, "prog", uint32(pid))
		if bt["tag"] != pi.Tag || bt["type"] != tc.typ || bt["name"] != pi.Name {
			t.Errorf("prog %s: bpftool says %v %v %v", path, bt["tag"], bt["type"], bt["name"])
		}
	}

	lo, _ := net.InterfaceByName(fmt.Sprintf("bgp%d", os.Getpid()%100000))
	checkEntry(t, got[o.root+"/app/links/pass"], &pins.Entry{Path: o.root + "/app/links/pass", Kind: pins.KindLink,
		ID: uint32(xl.ID), Type: "xdp", Name: "pass",
		Link: &pins.LinkDetails{ProgramID: uint32(xl.Program), Ifindex: uint32(lo.Index), Target: lo.Name}})
	checkEntry(t, got[o.root+"/app/links/dump"], &pins.Entry{Path: o.root + "/app/links/dump", Kind: pins.KindLink,
		ID: uint32(il.ID), Type: "iter", Name: "dump",
		Link: &pins.LinkDetails{ProgramID: uint32(il.Program), Target: "bpf_map"}})
	bt = bpftoolShow(t, "link", uint32(xl.ID))
	if fmt.Sprint(bt["prog_id"]) != fmt.Sprint(xl.Program) || fmt.Sprint(bt["ifindex"]) != fmt.Sprint(lo.Index) {
		t.Errorf("xdp link: bpftool says %v", bt)
	}

	checkEntry(t, got[o.root+"/alias"], &pins.Entry{Path: o.root + "/alias", Kind: pins.KindSymlink, Target: "app/maps/counts"})

	// Only pins: no directories unless asked for.
	for p, e := range got {
		if e.Kind == pins.KindDir {
			t.Errorf("%s: directory listed without Dirs", p)
		}
	}
	if n := len(got); n != 7 {
		t.Errorf("listed %d entries, want 7: %v", n, keys(got))
	}
	withDirs := list(t, pins.Options{Dirs: true}, o.root)
	for _, d := range []string{"", "/app", "/app/maps", "/deep/a/b/c"} {
		if e := withDirs[o.root+d]; e == nil || e.Kind != pins.KindDir {
			t.Errorf("directory %q missing with Dirs: %+v", d, e)
		}
	}

	// A single pin as root lists just that pin.
	single := list(t, pins.Options{}, o.root+"/app/links/dump")
	if len(single) != 1 || single[o.root+"/app/links/dump"] == nil {
		t.Errorf("single pin: %v", keys(single))
	}
}

func checkEntry(t *testing.T, got, want *pins.Entry) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: not listed", want.Path)
		return
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got  %s\n want %s", want.Path, g, w)
	}
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestListRefusesNonBPFFS(t *testing.T) {
	err := pins.List([]string{os.TempDir()}, pins.Options{}, func(*pins.Entry) error { return nil })
	if !errors.Is(err, pins.ErrNotBPFFS) {
		t.Errorf("List(%s) = %v, want ErrNotBPFFS", os.TempDir(), err)
	}
}

func TestPinChecksPaths(t *testing.T) {
	o := setup(t)
	other := testutil.MountBPFFS(t)
	mi, _ := o.counts.Info()
	id, _ := mi.ID()
	outside := t.TempDir()
	if err := os.Symlink(outside, o.root+"/out"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app", o.root+"/inside"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		opts pins.PinOptions
		want error
	}{
		{o.root + "/../escape", pins.PinOptions{}, pins.ErrEscape},
		{o.root + "/app/../../escape", pins.PinOptions{}, pins.ErrEscape},
		{o.root + "/out/x", pins.PinOptions{}, pins.ErrSymlink},
		{o.root + "/inside/x", pins.PinOptions{}, pins.ErrSymlink},
		{o.root + "/out/x/y", pins.PinOptions{Parents: true}, pins.ErrSymlink},
		{outside + "/x", pins.PinOptions{}, pins.ErrNotBPFFS},
		{o.root + "/app/maps/counts", pins.PinOptions{}, os.ErrExist},
		{o.root + "/missing/x", pins.PinOptions{}, os.ErrNotExist},
		{o.root, pins.PinOptions{}, pins.ErrMountRoot},
	} {
		err := pins.PinID(pins.KindMap, uint32(id), tc.path, tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("PinID(%s) = %v, want %v", tc.path, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("something was pinned outside the bpffs: %v", ents)
	}
	if err := pins.PinID(pins.KindMap, uint32(id), other+"/new/dir/counts", pins.PinOptions{Parents: true}); err != nil {
		t.Fatal(err)
	}
	got := list(t, pins.Options{}, other)
	if e := got[other+"/new/dir/counts"]; e == nil || e.ID != uint32(id) {
		t.Errorf("pinned map not listed: %v", keys(got))
	}
	if err := pins.PinID(pins.KindLink, 1<<31, other+"/x", pins.PinOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin of a missing link id = %v, want ErrNotExist", err)
	}
}

func TestRename(t *testing.T) {
	o := setup(t)
	other := testutil.MountBPFFS(t)
	r := o.root
	if err := pins.Rename(r+"/app/maps/counts", r+"/app/progs/filter", pins.RenameOptions{}); !errors.Is(err, os.ErrExist) {
		t.Errorf("rename onto a pin = %v, want ErrExist", err)
	}
	if err := pins.Rename(r+"/app/maps/counts", other+"/counts", pins.RenameOptions{}); !errors.Is(err, pins.ErrCrossMount) {
		t.Errorf("rename across mounts = %v, want ErrCrossMount", err)
	}
	if err := pins.Rename(r+"/app/maps/counts", r+"/../x", pins.RenameOptions{}); !errors.Is(err, pins.ErrEscape) {
		t.Errorf("rename out with .. = %v, want ErrEscape", err)
	}
	if err := pins.Rename(r+"/app", r+"/renamed", pins.RenameOptions{}); err != nil {
		t.Fatal(err)
	}
	got := list(t, pins.Options{}, r)
	if got[r+"/renamed/links/pass"] == nil || got[r+"/app/links/pass"] != nil {
		t.Errorf("after rename: %v", keys(got))
	}
	if err := pins.Rename(r+"/renamed/maps/counts", r+"/renamed/progs/filter", pins.RenameOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
	if e := list(t, pins.Options{}, r)[r+"/renamed/progs/filter"]; e == nil || e.Kind != pins.KindMap {
		t.Errorf("replace: %+v", e)
	}
}

func TestUnpin(t *testing.T) {
	o := setup(t)
	r := o.root
	if err := pins.Unpin(r+"/app", pins.UnpinOptions{}); !errors.Is(err, pins.ErrIsDir) {
		t.Errorf("unpin of a directory without -r = %v, want ErrIsDir", err)
	}
	if err := pins.Unpin(r, pins.UnpinOptions{Recursive: true}); !errors.Is(err, pins.ErrMountRoot) {
		t.Errorf("unpin of the root = %v, want ErrMountRoot", err)
	}
	if err := pins.Unpin(r+"/alias", pins.UnpinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r + "/app/maps/counts"); err != nil {
		t.Errorf("unpin of a symlink touched its target: %v", err)
	}
	xl, _ := o.xdpLink.Info()
	o.xdpLink.Close()
	if err := pins.Unpin(r+"/app", pins.UnpinOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	got := list(t, pins.Options{Dirs: true}, r)
	for p := range got {
		if strings.Contains(p, "app") || strings.Contains(p, "unpinning") {
			t.Errorf("left after unpin -r: %s", p)
		}
	}
	// The link's last reference was the pin: it is gone, so lo is free.
	if _, err := link.NewFromID(xl.ID); err == nil {
		t.Errorf("link %d still exists after its pin was removed", xl.ID)
	}
}

// TestUnpinRefusesPartial: a tree the caller cannot fully remove is left
// whole, with an error that says why.
func TestUnpinRefusesPartial(t *testing.T) {
	o := setup(t)
	r := o.root
	const nobody = 65534
	// nobody owns app/ and may remove its entries, but not those of the
	// root-owned app/maps/.
	for _, p := range []string{r, r + "/app", r + "/app/links", r + "/app/progs"} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary may sit in a directory nobody cannot search.
	bin := filepath.Join(testutil.PublicDir(t), "pins.test")
	if out, err := exec.Command("cp", os.Args[0], bin).CombinedOutput(); err != nil {
		t.Fatalf("copy test binary: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "PINS_TEST_UNPIN="+r+"/app")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("unpin -r by nobody succeeded: %s", out)
	}
	if !strings.Contains(string(out), "maps") || !strings.Contains(string(out), "nothing was removed") {
		t.Errorf("message does not say what and why: %s", out)
	}
	if n := len(list(t, pins.Options{}, r+"/app")); n != 5 {
		t.Errorf("app/ has %d pins after a refused unpin, want all 5", n)
	}
}

func TestMain(m *testing.M) {
	if p := os.Getenv("PINS_TEST_UNPIN"); p != "" {
		if err := pins.Unpin(p, pins.UnpinOptions{Recursive: true}); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
