package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// complete runs cobra's completion request and returns the candidates.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	r := bpfgate(t, append([]string{"__complete"}, args...)...)
	if r.code != 0 {
		t.Fatalf("__complete %v: %+v", args, r)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasPrefix(l, ":") { // the directive
			out = append(out, l)
		}
	}
	return out
}

func TestCompletePinIDs(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "cmpl_test", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	if got := complete(t, "pin", ""); !slices.Contains(got, "map\ta map by id") || len(got) != 3 {
		t.Errorf("pin kinds: %q", got)
	}
	want := fmt.Sprintf("%d\tarray cmpl_test", id)
	if got := complete(t, "pin", "map", ""); !slices.Contains(got, want) {
		t.Errorf("pin map ids: %q lack %q", got, want)
	}
	if got := complete(t, "pin", "map", fmt.Sprint(id)); !slices.Contains(got, want) || slices.ContainsFunc(got, func(s string) bool {
		return !strings.HasPrefix(s, fmt.Sprint(id))
	}) {
		t.Errorf("pin map ids with prefix %d: %q", id, got)
	}
	if got := complete(t, "pin", "prog", ""); slices.Contains(got, want) {
		t.Errorf("pin prog offers a map: %q", got)
	}
}

func TestCompletePreloadRemove(t *testing.T) {
	testutil.RequireRoot(t)
	root := testutil.MountBPFFS(t)
	for _, d := range []string{"web", "counter", "@staging"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if got := complete(t, "preload", "remove", "--root", root, ""); !slices.Equal(got, []string{"counter", "web"}) {
		t.Errorf("preload remove: %q, want counter and web", got)
	}
	if got := complete(t, "preload", "remove", "--root", root, "counter", ""); !slices.Equal(got, []string{"web"}) {
		t.Errorf("preload remove counter: %q, want web", got)
	}
}
