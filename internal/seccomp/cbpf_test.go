package seccomp

import (
	"errors"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"golang.org/x/sys/unix"
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldABS  = clsLD | sizeW | modeABS
	retK_  = clsRET | retK
	jeqK   = clsJMP | jmpJEQ | srcK
	offNr  = 0
	offArg = 16
	nrRead = 0
)

// denyBPF fails bpf(2) with errno e and allows everything else.
func denyBPF(e uint32) []unix.SockFilter {
	return []unix.SockFilter{
		stmt(ldABS, offNr),
		jump(jeqK, nrBPFx86_64, 0, 1),
		stmt(retK_, uint32(Errno)|e),
		stmt(retK_, uint32(Allow)),
	}
}

func mustFilter(t *testing.T, prog []unix.SockFilter) *Filter {
	t.Helper()
	f, err := NewFilter(prog)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		prog []unix.SockFilter
		nr   int32
		args []uint64
		arch uint32
		want Action
	}{
		{"allow everything", []unix.SockFilter{stmt(retK_, uint32(Allow))}, nrBPFx86_64, nil, 0, Allow},
		{"deny bpf: bpf", denyBPF(1), nrBPFx86_64, nil, 0, Errno | 1},
		{"deny bpf: read", denyBPF(1), nrRead, nil, 0, Allow},
		{"wrong arch killed", []unix.SockFilter{
			stmt(ldABS, 4),
			jump(jeqK, auditArchX8664, 1, 0),
			stmt(retK_, uint32(KillProcess)),
			stmt(retK_, uint32(Allow)),
		}, nrRead, nil, unix.AUDIT_ARCH_AARCH64, KillProcess},
		{"right arch allowed", []unix.SockFilter{
			stmt(ldABS, 4),
			jump(jeqK, auditArchX8664, 1, 0),
			stmt(retK_, uint32(KillProcess)),
			stmt(retK_, uint32(Allow)),
		}, nrRead, nil, 0, Allow},
		{"argument: token_create denied", []unix.SockFilter{
			stmt(ldABS, offArg),
			jump(jeqK, 36, 0, 1),
			stmt(retK_, uint32(Errno)|13),
			stmt(retK_, uint32(Allow)),
		}, nrBPFx86_64, []uint64{36}, 0, Errno | 13},
		{"argument: high word", []unix.SockFilter{
			stmt(ldABS, offArg+4),
			jump(jeqK, 1, 0, 1),
			stmt(retK_, uint32(Errno)|13),
			stmt(retK_, uint32(Allow)),
		}, nrBPFx86_64, []uint64{1 << 32}, 0, Errno | 13},
		{"scratch memory and alu", []unix.SockFilter{
			stmt(ldABS, offNr),
			stmt(clsST, 3),
			stmt(clsLDX|modeMEM, 3),
			stmt(clsMISC|miscTXA, 0),
			stmt(clsALU|aluADD|srcK, 1),
			stmt(clsALU|aluMUL|srcK, 2),
			stmt(clsALU|aluSUB|srcK, 2),
			stmt(clsALU|aluDIV|srcK, 2),
			jump(jeqK, nrBPFx86_64, 0, 1), // ((nr+1)*2-2)/2 = nr
			stmt(retK_, uint32(Errno)|7),
			stmt(retK_, uint32(Allow)),
		}, nrBPFx86_64, nil, 0, Errno | 7},
		{"ret A", []unix.SockFilter{
			stmt(clsLD|modeIMM, uint32(Errno)|5),
			stmt(clsRET|retA, 0),
		}, 0, nil, 0, Errno | 5},
		{"division by a zero X returns 0", []unix.SockFilter{
			stmt(clsLDX|modeIMM, 0),
			stmt(clsLD|modeIMM, 10),
			stmt(clsALU|aluDIV|srcX, 0),
			stmt(retK_, uint32(Allow)),
		}, 0, nil, 0, KillThread},
		{"modulo by a zero X returns 0", []unix.SockFilter{
			stmt(clsLDX|modeIMM, 0),
			stmt(clsALU|aluMOD|srcX, 0),
			stmt(retK_, uint32(Allow)),
		}, 0, nil, 0, KillThread},
		{"jset and ja", []unix.SockFilter{
			stmt(ldABS, offArg),
			jump(clsJMP|jmpJSET|srcK, 0x4, 0, 1),
			stmt(clsJMP|jmpJA, 1),
			stmt(retK_, uint32(Allow)),
			stmt(retK_, uint32(Trap)),
		}, 0, []uint64{0x6}, 0, Trap},
		{"jgt and jge with X", []unix.SockFilter{
			stmt(clsLDX|modeIMM, 10),
			stmt(ldABS, offArg),
			jump(clsJMP|jmpJGT|srcX, 0, 2, 0),
			jump(clsJMP|jmpJGE|srcX, 0, 2, 0),
			stmt(retK_, uint32(Allow)),
			stmt(retK_, uint32(Errno)|1), // > 10
			stmt(retK_, uint32(Errno)|2), // == 10
		}, 0, []uint64{10}, 0, Errno | 2},
		{"shifts, or, and, xor, neg, len", []unix.SockFilter{
			stmt(clsLD|sizeW|modeLEN, 0),   // 64
			stmt(clsALU|aluLSH|srcK, 2),    // 256
			stmt(clsALU|aluRSH|srcK, 4),    // 16
			stmt(clsALU|aluOR|srcK, 1),     // 17
			stmt(clsALU|aluAND|srcK, 0x11), // 17
			stmt(clsALU|aluXOR|srcK, 0x10), // 1
			stmt(clsALU|aluNEG, 0),         // 0xffffffff
			stmt(clsALU|aluADD|srcK, 2),    // 1
			stmt(clsLDX|sizeW|modeLEN, 0),  // X = 64
			stmt(clsALU|aluLSH|srcX, 0),    // 1 << (64&31) = 1
			stmt(clsALU|aluOR|srcK, uint32(Errno)),
			stmt(clsRET|retA, 0),
		}, 0, nil, 0, Errno | 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustFilter(t, tc.prog)
			d := &Data{Nr: tc.nr, Arch: tc.arch}
			if d.Arch == 0 {
				d.Arch = auditArchX8664
			}
			copy(d.Args[:], tc.args)
			if got := f.Run(d); got != tc.want {
				t.Errorf("got %#x (%v), want %#x (%v)", uint32(got), got, uint32(tc.want), tc.want)
			}
		})
	}
}

func TestNewFilterRefuses(t *testing.T) {
	long := make([]unix.SockFilter, MaxInsns+1)
	for i := range long {
		long[i] = stmt(retK_, uint32(Allow))
	}
	for _, tc := range []struct {
		name string
		prog []unix.SockFilter
	}{
		{"empty", nil},
		{"too long", long},
		{"half-word load", []unix.SockFilter{stmt(clsLD|0x08|modeABS, 0), stmt(retK_, 0)}},
		{"load past seccomp_data", []unix.SockFilter{stmt(ldABS, 64), stmt(retK_, 0)}},
		{"unaligned load", []unix.SockFilter{stmt(ldABS, 2), stmt(retK_, 0)}},
		{"indirect load", []unix.SockFilter{stmt(clsLD|sizeW|0x40, 0), stmt(retK_, 0)}},
		{"jump past the end", []unix.SockFilter{jump(jeqK, 0, 1, 0), stmt(retK_, 0)}},
		{"false branch past the end", []unix.SockFilter{jump(jeqK, 0, 0, 5), stmt(retK_, 0)}},
		{"ja past the end", []unix.SockFilter{stmt(clsJMP|jmpJA, 0xffffffff), stmt(retK_, 0)}},
		{"ja to the end", []unix.SockFilter{stmt(clsJMP|jmpJA, 1), stmt(retK_, 0)}},
		{"scratch out of range", []unix.SockFilter{stmt(clsST, 16), stmt(retK_, 0)}},
		{"division by zero", []unix.SockFilter{stmt(clsALU|aluDIV|srcK, 0), stmt(retK_, 0)}},
		{"modulo by zero", []unix.SockFilter{stmt(clsALU|aluMOD|srcK, 0), stmt(retK_, 0)}},
		{"shift by 32", []unix.SockFilter{stmt(clsALU|aluLSH|srcK, 32), stmt(retK_, 0)}},
		{"no return at the end", []unix.SockFilter{stmt(retK_, 0), stmt(clsLD|modeIMM, 0)}},
		{"unknown opcode", []unix.SockFilter{stmt(0xffff, 0), stmt(retK_, 0)}},
		{"ret X", []unix.SockFilter{stmt(clsRET|0x08, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFilter(tc.prog); !errors.Is(err, ErrBadFilter) {
				t.Errorf("got %v, want ErrBadFilter", err)
			}
		})
	}
}

func TestCombine(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Action // in the order the filters were installed
		want Action
	}{
		{"no filters", nil, Allow},
		{"allow and log", []Action{Allow, Log}, Log},
		{"errno beats notification", []Action{UserNotif, Errno | 1}, Errno | 1},
		{"trap beats errno", []Action{Errno | 1, Trap}, Trap},
		{"kill process beats kill thread", []Action{KillThread, KillProcess}, KillProcess},
		{"kill thread beats trap", []Action{Trap, KillThread}, KillThread},
		{"newest errno wins a tie", []Action{Errno | 1, Errno | 38}, Errno | 38},
		{"trace beats log", []Action{Log, Trace}, Trace},
		{"an unknown action counts between kill thread and trap", []Action{Trap, Action(0x00010000)}, Action(0x00010000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Combine(tc.in); got != tc.want {
				t.Errorf("got %v (%#x), want %v (%#x)", got, uint32(got), tc.want, uint32(tc.want))
			}
		})
	}
}

func TestEvalBPF(t *testing.T) {
	byArg := mustFilter(t, []unix.SockFilter{
		stmt(ldABS, offNr),
		jump(jeqK, nrBPFx86_64, 0, 4),
		stmt(ldABS, offArg),
		jump(jeqK, 36, 0, 1),
		stmt(retK_, uint32(Errno)|1),
		stmt(retK_, uint32(Allow)),
		stmt(retK_, uint32(Allow)),
	})
	v, err := EvalBPF([]*Filter{byArg})
	if err != nil {
		testutil.Skip(t, err.Error())
	}
	if !v.ByCmd || v.Allowed() {
		t.Fatalf("got %+v, want a verdict per command, token_create blocked", v)
	}
	if b := v.Blocked(); len(b) != 1 || b[0].Cmd != "token_create" {
		t.Errorf("blocked: %+v", b)
	}
	if got, want := v.String(), "allow: map_create, map_lookup_elem, map_update_elem, map_delete_elem, map_get_next_key, prog_load, obj_pin, obj_get, prog_attach, prog_detach, prog_test_run, obj_get_info_by_fd, prog_query, raw_tracepoint_open, btf_load, map_lookup_and_delete_elem, map_freeze, link_create, link_update, iter_create, link_detach, prog_bind_map; fail with EPERM (operation not permitted): token_create"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	v, _ = EvalBPF([]*Filter{mustFilter(t, denyBPF(1)), mustFilter(t, []unix.SockFilter{stmt(retK_, uint32(Allow))})})
	if v.ByCmd || v.Allowed() || v.String() != "fail with EPERM (operation not permitted)" {
		t.Errorf("got %+v %q", v, v.String())
	}
}

func TestEncodeDecode(t *testing.T) {
	f := mustFilter(t, denyBPF(1))
	g, err := DecodeFilter(f.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if g.Len() != f.Len() || g.Run(BPFData(0)) != Errno|1 {
		t.Errorf("round trip: %+v", g)
	}
	if _, err := DecodeFilter(make([]byte, 7)); !errors.Is(err, ErrBadFilter) {
		t.Errorf("7 bytes: %v", err)
	}
}
