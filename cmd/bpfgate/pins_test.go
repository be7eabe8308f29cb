package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

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

	// ls --json agrees with bpftool on every id.
	var ents []pins.Entry
	if err := json.Unmarshal([]byte(mustRun(t, "ls", "--json", root)), &ents); err != nil {
		t.Fatal(err)
	}
	kinds := map[pins.Kind]int{}
	for _, e := range ents {
		kinds[e.Kind]++
		if e.Kind != pins.KindMap && e.Kind != pins.KindProgram && e.Kind != pins.KindLink {
			continue
		}
		tool := map[pins.Kind]string{pins.KindMap: "map", pins.KindProgram: "prog", pins.KindLink: "link"}[e.Kind]
		raw, _ := exec.Command("bpftool", "-j", tool, "show", "pinned", e.Path).Output()
		var bt struct {
			ID uint32 `json:"id"`
		}
		if err := json.Unmarshal(raw, &bt); err != nil || bt.ID != e.ID {
			t.Errorf("%s: bpfgate says id %d, bpftool %s (%v)", e.Path, e.ID, raw, err)
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
