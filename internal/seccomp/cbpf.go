package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrBadFilter means a program is not one the kernel would accept as a
// seccomp filter.
var ErrBadFilter = errors.New("not a valid seccomp filter")

// MaxInsns is the most instructions a classic BPF program may have
// (BPF_MAXINSNS).
const MaxInsns = 4096

// Classic BPF opcode fields (linux/filter.h, linux/bpf_common.h).
const (
	clsLD, clsLDX, clsST, clsSTX, clsALU, clsJMP, clsRET, clsMISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07

	sizeW = 0x00

	modeIMM, modeABS, modeMEM, modeLEN = 0x00, 0x20, 0x60, 0x80

	srcK, srcX = 0x00, 0x08

	aluADD, aluSUB, aluMUL, aluDIV, aluOR, aluAND, aluLSH, aluRSH, aluNEG, aluMOD, aluXOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0

	jmpJA, jmpJEQ, jmpJGT, jmpJGE, jmpJSET = 0x00, 0x10, 0x20, 0x30, 0x40

	retK, retA = 0x00, 0x10

	miscTAX, miscTXA = 0x00, 0x80

	memWords = 16 // BPF_MEMWORDS
)

// DataSize is sizeof(struct seccomp_data): nr, arch, instruction_pointer,
// args[6].
const DataSize = 64

// Data is struct seccomp_data, what a seccomp filter sees of a system call.
type Data struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// bytes lays d out as the kernel does: native-endian fields, no padding.
func (d *Data) bytes() [DataSize]byte {
	var b [DataSize]byte
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(d.Nr))
	ne.PutUint32(b[4:], d.Arch)
	ne.PutUint64(b[8:], d.IP)
	for i, a := range d.Args {
		ne.PutUint64(b[16+8*i:], a)
	}
	return b
}

// Filter is a classic BPF program as seccomp takes it. Build one with
// NewFilter, which checks it as the kernel would, then Run it.
type Filter struct {
	insns []unix.SockFilter
}

// NewFilter checks prog as the kernel's seccomp_check_filter and
// bpf_check_classic do (only the instructions seccomp allows, every jump
// forward and inside the program, scratch memory in range, no division by a
// zero constant, a return at the end) and returns it ready to Run.
func NewFilter(prog []unix.SockFilter) (*Filter, error) {
	if len(prog) == 0 || len(prog) > MaxInsns {
		return nil, fmt.Errorf("%w: %d instructions (want 1 to %d)", ErrBadFilter, len(prog), MaxInsns)
	}
	for pc, in := range prog {
		if err := checkInsn(prog, pc, in); err != nil {
			return nil, fmt.Errorf("%w: instruction %d (code %#04x k %#x): %s", ErrBadFilter, pc, in.Code, in.K, err)
		}
	}
	if last := prog[len(prog)-1]; last.Code&0x07 != clsRET {
		return nil, fmt.Errorf("%w: the last instruction is not a return", ErrBadFilter)
	}
	return &Filter{insns: append([]unix.SockFilter(nil), prog...)}, nil
}

// Len returns the number of instructions.
func (f *Filter) Len() int { return len(f.insns) }

func checkInsn(prog []unix.SockFilter, pc int, in unix.SockFilter) error {
	rest := uint64(len(prog) - pc - 1) // instructions after this one
	switch in.Code {
	case clsLD | sizeW | modeABS:
		if in.K >= DataSize || in.K%4 != 0 {
			return errors.New("load outside struct seccomp_data or not word aligned")
		}
	case clsLD | sizeW | modeLEN, clsLDX | sizeW | modeLEN,
		clsLD | modeIMM, clsLDX | modeIMM,
		clsRET | retK, clsRET | retA,
		clsMISC | miscTAX, clsMISC | miscTXA:
	case clsLD | modeMEM, clsLDX | modeMEM, clsST, clsSTX:
		if in.K >= memWords {
			return errors.New("scratch memory index out of range")
		}
	case clsALU | aluADD | srcK, clsALU | aluADD | srcX,
		clsALU | aluSUB | srcK, clsALU | aluSUB | srcX,
		clsALU | aluMUL | srcK, clsALU | aluMUL | srcX,
		clsALU | aluDIV | srcX, clsALU | aluMOD | srcX,
		clsALU | aluOR | srcK, clsALU | aluOR | srcX,
		clsALU | aluAND | srcK, clsALU | aluAND | srcX,
		clsALU | aluLSH | srcX, clsALU | aluRSH | srcX,
		clsALU | aluXOR | srcK, clsALU | aluXOR | srcX,
		clsALU | aluNEG:
	case clsALU | aluDIV | srcK, clsALU | aluMOD | srcK:
		if in.K == 0 {
			return errors.New("division by zero")
		}
	case clsALU | aluLSH | srcK, clsALU | aluRSH | srcK:
		if in.K >= 32 {
			return errors.New("shift by 32 or more")
		}
	case clsJMP | jmpJA:
		if uint64(in.K) >= rest {
			return errors.New("jump out of the program")
		}
	case clsJMP | jmpJEQ | srcK, clsJMP | jmpJEQ | srcX,
		clsJMP | jmpJGT | srcK, clsJMP | jmpJGT | srcX,
		clsJMP | jmpJGE | srcK, clsJMP | jmpJGE | srcX,
		clsJMP | jmpJSET | srcK, clsJMP | jmpJSET | srcX:
		if uint64(in.Jt) >= rest || uint64(in.Jf) >= rest {
			return errors.New("jump out of the program")
		}
	default:
		return errors.New("an instruction seccomp does not allow")
	}
	return nil
}

// Run evaluates the filter for one system call and returns what it
// returns. Jumps only go forward, so it ends after at most Len steps.
func (f *Filter) Run(d *Data) Action {
	data := d.bytes()
	var (
		a, x uint32
		mem  [memWords]uint32
	)
	for pc := 0; pc < len(f.insns); pc++ {
		in := f.insns[pc]
		switch in.Code {
		case clsLD | sizeW | modeABS:
			a = binary.NativeEndian.Uint32(data[in.K:])
		case clsLD | sizeW | modeLEN:
			a = DataSize
		case clsLDX | sizeW | modeLEN:
			x = DataSize
		case clsLD | modeIMM:
			a = in.K
		case clsLDX | modeIMM:
			x = in.K
		case clsLD | modeMEM:
			a = mem[in.K]
		case clsLDX | modeMEM:
			x = mem[in.K]
		case clsST:
			mem[in.K] = a
		case clsSTX:
			mem[in.K] = x
		case clsMISC | miscTAX:
			x = a
		case clsMISC | miscTXA:
			a = x
		case clsRET | retK:
			return Action(in.K)
		case clsRET | retA:
			return Action(a)
		case clsALU | aluNEG:
			a = -a
		case clsJMP | jmpJA:
			pc += int(in.K)
		default:
			src := in.K
			if in.Code&srcX != 0 {
				src = x
			}
			switch in.Code & 0x07 {
			case clsALU:
				var ok bool
				if a, ok = alu(in.Code&0xf0, a, src); !ok {
					// The kernel's conversion returns 0 on a division by a
					// zero X: SECCOMP_RET_KILL_THREAD.
					return 0
				}
			case clsJMP:
				var taken bool
				switch in.Code & 0xf0 {
				case jmpJEQ:
					taken = a == src
				case jmpJGT:
					taken = a > src
				case jmpJGE:
					taken = a >= src
				case jmpJSET:
					taken = a&src != 0
				}
				if taken {
					pc += int(in.Jt)
				} else {
					pc += int(in.Jf)
				}
			}
		}
	}
	// NewFilter made sure the last instruction returns.
	return 0
}

// alu computes a op src; ok is false for a division by zero.
func alu(op uint16, a, src uint32) (uint32, bool) {
	switch op {
	case aluADD:
		return a + src, true
	case aluSUB:
		return a - src, true
	case aluMUL:
		return a * src, true
	case aluDIV:
		if src == 0 {
			return 0, false
		}
		return a / src, true
	case aluMOD:
		if src == 0 {
			return 0, false
		}
		return a % src, true
	case aluOR:
		return a | src, true
	case aluAND:
		return a & src, true
	case aluLSH:
		return a << (src & 31), true
	case aluRSH:
		return a >> (src & 31), true
	case aluXOR:
		return a ^ src, true
	}
	return a, true
}

// ReadsArgs reports whether the filter loads any of the system call's
// arguments, or its instruction pointer: then its verdict can depend on
// more than the call's number.
func (f *Filter) ReadsArgs() bool {
	for _, in := range f.insns {
		if in.Code == clsLD|sizeW|modeABS && in.K >= 8 {
			return true
		}
	}
	return false
}

// DecodeFilter reads a filter from its raw form: struct sock_filter
// entries of 8 bytes in native byte order.
func DecodeFilter(raw []byte) (*Filter, error) {
	if len(raw)%8 != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of instructions", ErrBadFilter, len(raw))
	}
	if len(raw)/8 > MaxInsns {
		return nil, fmt.Errorf("%w: %d instructions (want at most %d)", ErrBadFilter, len(raw)/8, MaxInsns)
	}
	prog := make([]unix.SockFilter, len(raw)/8)
	ne := binary.NativeEndian
	for i := range prog {
		b := raw[8*i:]
		prog[i] = unix.SockFilter{Code: ne.Uint16(b), Jt: b[2], Jf: b[3], K: ne.Uint32(b[4:])}
	}
	return NewFilter(prog)
}

// Encode returns the filter in the raw form DecodeFilter reads.
func (f *Filter) Encode() []byte {
	out := make([]byte, 8*len(f.insns))
	ne := binary.NativeEndian
	for i, in := range f.insns {
		b := out[8*i:]
		ne.PutUint16(b, in.Code)
		b[2], b[3] = in.Jt, in.Jf
		ne.PutUint32(b[4:], in.K)
	}
	return out
}
