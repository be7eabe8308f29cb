package preload

import (
	"errors"
	"os"
	"path/filepath"
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
	root := opts.root()
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
		if err := listTree(filepath.Join(root, m.Name), &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Name() == stagingDir || named[e.Name()] {
			continue
		}
		st := State{Name: e.Name(), State: StateNoManifest, Why: "bpfgate preload apply --prune or remove " + e.Name() + " removes it"}
		if err := listTree(filepath.Join(root, e.Name()), &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	staged, _ := os.ReadDir(filepath.Join(root, stagingDir))
	for _, e := range staged {
		out = append(out, State{Name: e.Name(), State: StateLeftover, Why: "a killed apply left it; the next apply removes it"})
	}
	slices.SortStableFunc(out, func(a, b State) int { return a.Order - b.Order })
	return out, nil
}

func listTree(dir string, st *State) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return pins.List([]string{dir}, pins.Options{}, func(e *pins.Entry) error {
		st.Pins = append(st.Pins, e)
		return nil
	})
}
