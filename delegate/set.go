package delegate

import "fmt"

// DefaultPath is where a workload finds its bpffs unless told otherwise:
// where libbpf and cilium/ebpf look for a token, and where a bpffs is
// mounted by convention.
const DefaultPath = "/sys/fs/bpf"

// Kind is one of the four delegation masks.
type Kind int

// The four masks, in the order the kernel prints them.
const (
	Cmds Kind = iota
	Maps
	Progs
	Attachs
)

// Kinds lists every Kind in the kernel's order.
var Kinds = [...]Kind{Cmds, Maps, Progs, Attachs}

var kindInfo = [...]struct {
	name, option, enum, prefix, noun, guard string
}{
	Cmds:    {"cmds", "delegate_cmds", "bpf_cmd", "BPF_", "command", "__MAX_BPF_CMD"},
	Maps:    {"maps", "delegate_maps", "bpf_map_type", "BPF_MAP_TYPE_", "map type", "__MAX_BPF_MAP_TYPE"},
	Progs:   {"progs", "delegate_progs", "bpf_prog_type", "BPF_PROG_TYPE_", "program type", "__MAX_BPF_PROG_TYPE"},
	Attachs: {"attachs", "delegate_attachs", "bpf_attach_type", "BPF_", "attach type", "__MAX_BPF_ATTACH_TYPE"},
}

func (k Kind) valid() bool { return k >= Cmds && k <= Attachs }

// String returns the short name: cmds, maps, progs or attachs.
func (k Kind) String() string {
	if !k.valid() {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindInfo[k].name
}

// Option returns the bpffs mount option, e.g. delegate_cmds.
func (k Kind) Option() string { return kindInfo[k].option }

// EnumName returns the kernel's C enum the names come from, e.g. bpf_cmd.
func (k Kind) EnumName() string { return kindInfo[k].enum }

// Prefix returns the prefix the kernel strips from enum names, e.g. BPF_MAP_TYPE_.
func (k Kind) Prefix() string { return kindInfo[k].prefix }

// noun names one value of the kind in error messages.
func (k Kind) noun() string { return kindInfo[k].noun }

// KindByOption returns the Kind of a mount option name such as delegate_maps.
func KindByOption(option string) (Kind, bool) {
	for _, k := range Kinds {
		if kindInfo[k].option == option {
			return k, true
		}
	}
	return 0, false
}

// KindByName returns the Kind for cmds, maps, progs or attachs.
func KindByName(name string) (Kind, bool) {
	for _, k := range Kinds {
		if kindInfo[k].name == name {
			return k, true
		}
	}
	return 0, false
}

// Set is a delegation: which BPF commands, map types, program types and
// attach types a BPF token derived from a filesystem may use. Bit n of a mask
// stands for the enum value n.
type Set struct {
	Cmds    uint64 `json:"cmds"`
	Maps    uint64 `json:"maps"`
	Progs   uint64 `json:"progs"`
	Attachs uint64 `json:"attachs"`
}

// Mask returns the mask of kind k.
func (s Set) Mask(k Kind) uint64 {
	switch k {
	case Cmds:
		return s.Cmds
	case Maps:
		return s.Maps
	case Progs:
		return s.Progs
	case Attachs:
		return s.Attachs
	}
	return 0
}

// SetMask replaces the mask of kind k.
func (s *Set) SetMask(k Kind, m uint64) {
	switch k {
	case Cmds:
		s.Cmds = m
	case Maps:
		s.Maps = m
	case Progs:
		s.Progs = m
	case Attachs:
		s.Attachs = m
	}
}

// IsZero reports whether nothing is delegated. The kernel refuses to create
// a token from such a filesystem (ENOENT).
func (s Set) IsZero() bool { return s == Set{} }

// Union returns the bitwise OR of s and o.
func (s Set) Union(o Set) Set {
	return Set{s.Cmds | o.Cmds, s.Maps | o.Maps, s.Progs | o.Progs, s.Attachs | o.Attachs}
}

// Has reports whether value v of kind k is delegated.
func (s Set) Has(k Kind, v uint32) bool {
	return v < 64 && s.Mask(k)&(1<<v) != 0
}
