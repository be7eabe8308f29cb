//go:build bpflsm && guardgaps

// Attacks the guard does not stop (docs/preload.md, "What the guard cannot
// stop"): built only with -tags 'bpflsm guardgaps', so that the kernel
// matrix does not run them; each fails while the gap is open.
package guard

import (
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
)

// TestGuardGapProgramWritesTreeMap: a program of root's own writes a map
// of the tree (through a read-only fd: programs may use any fd of a map).
func TestGuardGapProgramWritesTreeMap(t *testing.T) {
	l := newLab(t)
	l.refused("operation not permitted", "copy", "prog-write-map", l.p("demo/maps/counts"), "0x1234")
	if v := l.readU64("demo/maps/counts"); v != 0 {
		t.Errorf("the preloaded map holds %#x", v)
	}
}

// TestGuardGapMmap: a BPF_F_MMAPABLE map of the tree is written through a
// shared writable mapping of an fd from its id.
func TestGuardGapMmap(t *testing.T) {
	l := newLab(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: 1 << 10 /* BPF_F_MMAPABLE */})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(l.p("demo/maps/mmapable")); err != nil {
		t.Fatal(err)
	}
	if err := Sync(l.opts); err != nil {
		t.Fatal(err)
	}
	id := l.mapID("demo/maps/mmapable")
	l.refused("operation not permitted", "copy", "mmap-write", strconv.Itoa(int(id)))
	if v := l.readU64("demo/maps/mmapable"); v != 0 {
		t.Errorf("the mmapable map holds %#x", v)
	}
}

// TestGuardGapRace: the bpf hook reads the fd's object before the kernel
// does; another thread's dup2 in between makes the kernel update a
// protected map.
func TestGuardGapRace(t *testing.T) {
	l := newLab(t)
	id := l.mapID("demo/maps/counts")
	l.refused("operation not permitted", "copy", "race-update", strconv.Itoa(int(id)), "0x5678")
	if v := l.readU64("demo/maps/counts"); v != 0 {
		t.Errorf("the preloaded map holds %#x", v)
	}
}
