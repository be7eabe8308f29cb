package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/pins"
)

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := bpfgate(t, args...)
	if r.code != 0 {
		t.Fatalf("bpfgate %s: exit %d: %s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// TestPreloadExampleThenInspect runs the README's preload example: the
// shipped iterators and XDP counter, applied, inspected with ls, managed
// with pin, mv and unpin, and removed.
func TestPreloadExampleThenInspect(t *testing.T) {
	testutil.RequireRoot(t)
	root := filepath.Join(testutil.MountBPFFS(t), "bpfgate")
	dir := "../../examples/preload"
	out := mustRun(t, "preload", "apply", "--dir", dir, "--root", root)
	for _, want := range []string{"iterators: created", "counter: created"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply: want %q in %q", want, out)
		}
	}
	out = mustRun(t, "preload", "apply", "--dir", dir, "--root", root)
	if strings.Count(out, "unchanged") != 2 {
		t.Errorf("re-apply: %q", out)
	}
	out = mustRun(t, "preload", "status", "--dir", dir, "--root", root)
	if strings.Count(out, "applied") != 2 {
		t.Errorf("status: %q", out)
	}

	// The counter counts what lo receives; the iterator prints its map.
	c, err := net.Dial("udp", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	c.Close()
	counts, err := ebpf.LoadPinnedMap(root+"/counter/maps/counts", nil)
	if err != nil {
		t.Fatal(err)
	}
	var packets uint64
	if err := counts.Lookup(uint32(0), &packets); err != nil || packets == 0 {
		t.Errorf("counter saw %d packets on lo (%v)", packets, err)
	}
	counts.Close()
	dump, err := os.ReadFile(root + "/iterators/links/dump_bpf_map")
	if err != nil || !strings.Contains(string(dump), "counts") {
		t.Errorf("map iterator output %q (%v) does not list the counts map", dump, err)
	}

	// ls --json agrees with bpftool field by field.
	var ents []pins.Entry
	raw := mustRun(t, "ls", "--json", root)
	if err := json.Unmarshal([]byte(raw), &ents); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	json.Unmarshal([]byte(raw), &objs)
	kinds := map[pins.Kind]int{}
	for i, e := range ents {
		kinds[e.Kind]++
		if e.Kind == pins.KindMap || e.Kind == pins.KindProgram || e.Kind == pins.KindLink {
			compareWithBPFTool(t, objs[i])
		}
	}
	if kinds[pins.KindLink] != 3 || kinds[pins.KindProgram] != 3 || kinds[pins.KindSymlink] != 2 {
		t.Errorf("ls --json kinds: %v", kinds)
	}
	if tree := mustRun(t, "ls", "--tree", root); !strings.Contains(tree, "├── links/") || !strings.Contains(tree, "count_packets  link") {
		t.Errorf("tree:\n%s", tree)
	}

	// pin, mv, unpin on the same tree.
	var mapID string
	for _, e := range ents {
		if e.Name == "counts" && e.Kind == pins.KindMap {
			mapID = jsonNumber(e.ID)
		}
	}
	mustRun(t, "pin", "-p", "map", mapID, root+"/extra/dir/counts")
	mustRun(t, "mv", root+"/extra/dir/counts", root+"/extra/counts")
	if r := bpfgate(t, "mv", root+"/extra/counts", root+"/counter/maps/counts"); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("mv onto an existing pin: %+v", r)
	}
	if r := bpfgate(t, "unpin", root+"/extra"); r.code == 0 || !strings.Contains(r.stderr, "-r") {
		t.Errorf("unpin of a directory without -r: %+v", r)
	}
	if r := bpfgate(t, "pin", "map", mapID, root+"/../escape"); r.code == 0 || !strings.Contains(r.stderr, "..") {
		t.Errorf("pin with ..: %+v", r)
	}
	mustRun(t, "unpin", "-r", root+"/extra")

	mustRun(t, "preload", "remove", "iterators", "counter", "--root", root)
	if out := mustRun(t, "ls", root); strings.Count(out, "\n") != 1 {
		t.Errorf("left after remove:\n%s", out)
	}
}

// bpftoolKeys are the keys bpfgate ls shares with bpftool's map, prog and
// link show, by kind.
var bpftoolKeys = map[string][]string{
	"map":  {"id", "type", "name", "flags", "bytes_key", "bytes_value", "max_entries"},
	"prog": {"id", "type", "name", "tag"},
	"link": {"id", "type", "prog_id", "devname", "ifindex", "attach_type", "cgroup_id", "target_name", "tp_name", "tracepoint"},
}

// compareWithBPFTool checks every key an ls entry shares with bpftool -j
// KIND show pinned PATH: present in both or in neither, with equal values.
func compareWithBPFTool(t *testing.T, obj map[string]any) {
	t.Helper()
	kind, path := obj["kind"].(string), obj["path"].(string)
	// bpftool 7.5 exits 255 after showing a pinned link: its JSON decides.
	out, err := exec.Command("bpftool", "-j", kind, "show", "pinned", path).Output()
	var bt map[string]any
	if jerr := json.Unmarshal(out, &bt); jerr != nil || bt["error"] != nil {
		t.Errorf("bpftool %s show pinned %s: %v: %s", kind, path, err, out)
		return
	}
	n := 0
	for _, k := range bpftoolKeys[kind] {
		want, inTool := bt[k]
		got, inOurs := obj[k]
		if inTool != inOurs || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s: bpfgate %v (%v), bpftool %v (%v)", path, k, got, inOurs, want, inTool)
		}
		if inTool {
			n++
		}
	}
	if n < 3 {
		t.Errorf("%s: only %d keys compared: %s", path, n, out)
	}
}

// TestLsCgroupLinkMatchesBPFTool: a pinned cgroup link, as ls and bpftool
// show it (the preload example has XDP and iterator links only).
func TestLsCgroupLinkMatchesBPFTool(t *testing.T) {
	testutil.RequireRoot(t)
	const unified = "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if err := unix.Statfs(unified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		testutil.Skip(t, "no cgroup2 at "+unified)
	}
	cg, err := os.MkdirTemp(unified, "bpfgate-json-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetIngress,
		Name: "allow_all", License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupInetIngress, Program: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	root := testutil.MountBPFFS(t)
	if err := l.Pin(filepath.Join(root, "cg_link")); err != nil {
		t.Fatal(err)
	}
	if err := prog.Pin(filepath.Join(root, "cg_prog")); err != nil {
		t.Fatal(err)
	}
	var all, objs []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "ls", "-j", root)), &all); err != nil {
		t.Fatal(err)
	}
	for _, o := range all { // leave out the kernel's maps.debug and progs.debug
		if o["kind"] == "link" || o["kind"] == "prog" {
			objs = append(objs, o)
		}
	}
	if len(objs) != 2 {
		t.Fatalf("%v", all)
	}
	for _, o := range objs {
		compareWithBPFTool(t, o)
	}
	if objs[0]["attach_type"] != "cgroup_inet_ingress" || objs[0]["cgroup_id"] == nil {
		t.Errorf("cgroup link: %v", objs[0])
	}
	if ids, _ := objs[1]["link_ids"].([]any); len(ids) != 1 || ids[0] != objs[0]["id"] {
		t.Errorf("prog's link_ids %v, link id %v", objs[1]["link_ids"], objs[0]["id"])
	}
	l.Unpin()
	prog.Unpin()
}

func jsonNumber(v uint32) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSystemdUnitCommands keeps the shipped unit true: every command it
// runs is one bpfgate has, with flags it knows.
func TestSystemdUnitCommands(t *testing.T) {
	data, err := os.ReadFile("../../contrib/systemd/bpfgate-preload.service")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "Exec") {
			continue
		}
		_, cmdline, _ := strings.Cut(line, "=")
		f := strings.Fields(cmdline)
		if filepath.Base(f[0]) != "bpfgate" {
			t.Errorf("%s: runs %s, not bpfgate", line, f[0])
			continue
		}
		cmd, rest, err := newRoot(&globals{}).Find(f[1:])
		if err != nil || cmd.Name() != "apply" {
			t.Errorf("%s: %v (found %v)", line, err, cmd.Name())
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%s: %v", line, err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("found %d Exec lines, want ExecStart and ExecReload", n)
	}
}
