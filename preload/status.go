package preload

import (
	"errors"
	"os"
	"slices"

	"github.com/bpfgate/bpfgate/pins"
)

// The states Status reports.
const (
	StateApplied    = "applied"
	StateChanged    = "changed"
	StateNotApplied = "not applied"
	StateNoManifest = "no manifest"
	StateLeftover   = "leftover staging tree"
)

// State is what Status found for one object.
type State struct {
	Name  string `json:"name"`
	Order int    `json:"order"`
	State string `json:"state"`
	// Why says what differs when the object is not applied as written.
	Why      string `json:"why,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	// Pins are the object's pinned maps, programs and links.
	Pins []*pins.Entry `json:"pins,omitempty"`
}

// Status compares the manifests with the pinned trees below the root,
// without changing anything.
func Status(ms []*Manifest, opts Options) ([]State, error) {
	root, err := pins.OpenDir(opts.root(), pins.OpenOptions{})
	// No root yet (below /sys/fs/bpf, not even a bpffs yet): nothing is
	// applied, and apply would make it.
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, pins.ErrNotBPFFS) && systemRoot(opts.root()) {
		out := make([]State, 0, len(ms))
		for _, m := range ms {
			out = append(out, State{Name: m.Name, Order: m.Order, Manifest: m.File, State: StateNotApplied})
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var out []State
	named := map[string]bool{}
	for _, m := range ms {
		named[m.Name] = true
		st := State{Name: m.Name, Order: m.Order, Manifest: m.File, State: StateApplied}
		switch why := stale(root, m); why {
		case "":
		case "not applied":
			st.State = StateNotApplied
		default:
			st.State, st.Why = StateChanged, why
		}
		if err := listTree(root, m.Name, &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	names, err := root.ReadDir(".")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if reserved(n) || named[n] {
			continue
		}
		st := State{Name: n, State: StateNoManifest, Why: "bpfgate preload apply --prune or remove " + n + " removes it"}
		if err := listTree(root, n, &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	staged, _ := root.ReadDir(stagingDir)
	for _, n := range staged {
		out = append(out, State{Name: n, State: StateLeftover, Why: "a killed apply left it; the next apply removes it"})
	}
	slices.SortStableFunc(out, func(a, b State) int { return a.Order - b.Order })
	return out, nil
}

func listTree(root *pins.Dir, name string, st *State) error {
	if _, err := root.Lstat(name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return root.List(name, pins.Options{}, func(e *pins.Entry) error {
		st.Pins = append(st.Pins, e)
		return nil
	})
}
