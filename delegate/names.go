package delegate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Value is one enumerator of a kernel enum, e.g. {BPF_PROG_LOAD 5}.
type Value struct {
	Name  string `json:"name"`
	Value uint32 `json:"value"`
}

// Enum is the kernel's list of names for one Kind, in the kernel's order.
// Only enumerators that carry the kind's prefix are kept; the __MAX_ guard
// gives Max.
type Enum struct {
	Values []Value `json:"values"`
	// Max is the value of the enum's __MAX_ guard: bits at or above it are
	// unknown to the kernel, which ignores them.
	Max uint32 `json:"max"`
}

// Names maps names to numbers and back for all four kinds.
type Names struct {
	Enums [4]Enum `json:"enums"`
	// Source says where the names came from: "btf", "cache" or "builtin".
	Source string `json:"source"`
	// Release is the kernel release the names were read from.
	Release string `json:"release,omitempty"`
}

// ErrNoEnum means kernel BTF lacks one of the delegation enums.
var ErrNoEnum = errors.New("delegation enum not found in BTF")

// NamesFromBTF reads the delegation enums from a BTF spec, usually the
// kernel's own.
func NamesFromBTF(spec *btf.Spec) (*Names, error) {
	n := &Names{Source: "btf"}
	for _, k := range Kinds {
		var e *btf.Enum
		if err := spec.TypeByName(k.EnumName(), &e); err != nil {
			return nil, fmt.Errorf("enum %s: %w: %w", k.EnumName(), ErrNoEnum, err)
		}
		vals := make([]enumerator, 0, len(e.Values))
		for _, v := range e.Values {
			vals = append(vals, enumerator{v.Name, v.Value})
		}
		n.Enums[k] = newEnum(k, vals)
	}
	return n, nil
}

type enumerator struct {
	name  string
	value uint64
}

// newEnum keeps the enumerators the kernel itself would consider: those whose
// name starts with the kind's prefix (case insensitive), and reads the
// __MAX_ guard.
func newEnum(k Kind, vals []enumerator) Enum {
	var e Enum
	guard := kindInfo[k].guard
	maxSeen := uint64(0)
	for _, v := range vals {
		if v.name == guard {
			e.Max = uint32(min(v.value, 64))
			continue
		}
		if !hasPrefixFold(v.name, k.Prefix()) || v.value > 0xffffffff {
			continue
		}
		e.Values = append(e.Values, Value{v.name, uint32(v.value)})
		maxSeen = max(maxSeen, v.value+1)
	}
	if e.Max == 0 {
		// No guard: assume the enum is dense.
		e.Max = uint32(min(maxSeen, 64))
	}
	return e
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// Enum returns the enum of kind k.
func (n *Names) Enum(k Kind) *Enum { return &n.Enums[k] }

// Any returns the mask the kernel considers "any": every bit below Max.
func (e *Enum) Any() uint64 {
	if e.Max >= 64 {
		return ^uint64(0)
	}
	return 1<<e.Max - 1
}

// ShortName returns the name the kernel prints for value v (lower case,
// prefix stripped, first alias in enum order), or "" if v has no name.
func (n *Names) ShortName(k Kind, v uint32) string {
	for _, val := range n.Enums[k].Values {
		if val.Value == v {
			return strings.ToLower(val.Name[len(k.Prefix()):])
		}
	}
	return ""
}

// Lookup finds the value of a name of kind k, case insensitive, with or
// without the kernel's prefix.
func (n *Names) Lookup(k Kind, name string) (uint32, bool) {
	pfx := k.Prefix()
	e := &n.Enums[k]
	for _, v := range e.Values {
		if strings.EqualFold(v.Name[len(pfx):], name) {
			return v.Value, true
		}
	}
	if hasPrefixFold(name, pfx) {
		short := name[len(pfx):]
		for _, v := range e.Values {
			if strings.EqualFold(v.Name[len(pfx):], short) {
				return v.Value, true
			}
		}
	}
	return 0, false
}

// List returns the short names of kind k, one per value (aliases dropped),
// in the kernel's order.
func (n *Names) List(k Kind) []string {
	seen := map[uint32]bool{}
	var out []string
	for _, v := range n.Enums[k].Values {
		if seen[v.Value] || v.Value >= 64 {
			continue
		}
		seen[v.Value] = true
		out = append(out, strings.ToLower(v.Name[len(k.Prefix()):]))
	}
	return out
}

// allNames returns every accepted short name of kind k, aliases included.
func (n *Names) allNames(k Kind) []string {
	out := make([]string, 0, len(n.Enums[k].Values))
	for _, v := range n.Enums[k].Values {
		out = append(out, strings.ToLower(v.Name[len(k.Prefix()):]))
	}
	return out
}
