package record

import (
	"encoding/binary"
)

// BPF commands this package decodes (enum bpf_cmd, a stable ABI).
const (
	cmdMapCreate         = 0
	cmdProgLoad          = 5
	cmdProgAttach        = 8
	cmdRawTracepointOpen = 17
	cmdBTFLoad           = 18
	cmdLinkCreate        = 28
	cmdTokenCreate       = 36
)

// Recorded lists the bpf() commands a recorded workload is notified for,
// as launch's seccomp filter selects them.
var Recorded = []uint32{cmdMapCreate, cmdProgLoad, cmdProgAttach, cmdRawTracepointOpen,
	cmdBTFLoad, cmdLinkCreate, cmdTokenCreate}

// flagTokenFD is BPF_F_TOKEN_FD: the attr carries a token.
const flagTokenFD = 1 << 16

// Offsets in union bpf_attr of the fields decoded.
const (
	offMapType    = 0  // map_create: map_type
	offMapFlags   = 16 // map_create: map_flags
	offProgType   = 0  // prog_load: prog_type
	offProgFlags  = 44 // prog_load: prog_flags
	offExpected   = 68 // prog_load: expected_attach_type
	offBTFFlags   = 32 // btf_load: btf_flags
	offAttachType = 8  // link_create and prog_attach: attach_type
)

// AttrSize is how much of a bpf_attr Decode looks at (up to prog_load's
// expected_attach_type): Serve reads no more of a workload's memory.
const AttrSize = offExpected + 4

// Call is what one bpf() call asked for, as far as a delegation bears on it.
type Call struct {
	Cmd uint32 `json:"cmd"`
	// Token says the call passed a token (BPF_F_TOKEN_FD).
	Token bool `json:"token"`
	// Type is the map type (map_create) or program type (prog_load).
	Type    uint32 `json:"type"`
	HasType bool   `json:"has_type"`
	// Attach is the expected attach type (prog_load) or the attach type
	// (link_create, prog_attach).
	Attach    uint32 `json:"attach"`
	HasAttach bool   `json:"has_attach"`
}

// Decode reads the fields of a bpf_attr that matter for cmd. attr holds
// the bytes the caller passed (at most the size argument); the kernel reads
// missing bytes as zero, and so does Decode. It never fails: garbage gives
// a Call with garbage values, which the kernel would refuse.
func Decode(cmd uint32, attr []byte) Call {
	u32 := func(off int) uint32 {
		if off < 0 || off+4 > len(attr) {
			var b [4]byte
			if off >= 0 && off < len(attr) {
				copy(b[:], attr[off:])
			}
			return binary.LittleEndian.Uint32(b[:])
		}
		return binary.LittleEndian.Uint32(attr[off:])
	}
	c := Call{Cmd: cmd}
	switch cmd {
	case cmdMapCreate:
		c.Type, c.HasType = u32(offMapType), true
		c.Token = u32(offMapFlags)&flagTokenFD != 0
	case cmdProgLoad:
		c.Type, c.HasType = u32(offProgType), true
		c.Attach, c.HasAttach = u32(offExpected), true
		c.Token = u32(offProgFlags)&flagTokenFD != 0
	case cmdBTFLoad:
		c.Token = u32(offBTFFlags)&flagTokenFD != 0
	case cmdLinkCreate, cmdProgAttach:
		c.Attach, c.HasAttach = u32(offAttachType), true
	}
	return c
}
