//go:build bpflsm && guardgaps

// Attacks the guard does not stop (docs/preload.md, "What the guard cannot
// stop"): built only with -tags 'bpflsm guardgaps', so that the kernel
// matrix does not run them; each fails while the gap is open.
package guard

import (
	"testing"
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
