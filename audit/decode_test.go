package audit

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
)

// raw builds a record as the tracer writes it.
type raw struct {
	cmd      uint32
	ret      int64
	fields   map[int]uint32 // attr offset: value
	name     string         // at the command's name offset
	attrLen  uint32
	token    *delegate.Set
	tokenFD  int32
	object   bool
	objType  uint32
	objAtt   uint32
	objID    uint32
	tokenDev uint32
	abi      uint32 // evCompat, evX32
}

func (r raw) event() *tracerEvent {
	e := &tracerEvent{Cmd: r.cmd, Ret: r.ret, Tgid: 10, Tid: 11, Uid: 100000, Userns: 4026532841,
		CgroupId: 7, TokenFd: -1, AttrLen: 160, Ktime: uint64(time.Second)}
	if r.attrLen != 0 {
		e.AttrLen = r.attrLen
	}
	for off, v := range r.fields {
		binary.LittleEndian.PutUint32(e.Attr[off:], v)
	}
	if r.name != "" {
		off := offMapName
		if r.cmd == cmdProgLoad {
			off = offProgName
		}
		copy(e.Attr[off:off+nameLen], r.name)
	}
	e.Flags |= r.abi
	copy(e.Comm[:], []int8{'l', 'o', 'a', 'd', 'e', 'r'})
	if r.token != nil {
		e.Flags |= evToken
		e.TokenFd = 4
		e.TokenUserns = 4026532841
		e.TokenDev = r.tokenDev
		e.TokenAllowed = [4]uint64{r.token.Cmds, r.token.Maps, r.token.Progs, r.token.Attachs}
	}
	if r.tokenFD != 0 {
		e.TokenFd = r.tokenFD
	}
	if r.object {
		e.Flags |= evObject
		e.ObjType, e.ObjAttachType, e.ObjId = r.objType, r.objAtt, r.objID
	}
	return e
}

func TestDecode(t *testing.T) {
	names := delegate.BuiltinNames()
	demo, err := names.SetFlags("map_create,prog_load,btf_load", "hash,array", "socket_filter", "cgroup_inet_ingress")
	if err != nil {
		t.Fatal(err)
	}
	noAttach := demo
	noAttach.Attachs = 0
	mapsOnly := demo
	mapsOnly.Cmds = 1 << cmdMapCreate
	eperm := -int64(unix.EPERM)
	for _, tc := range []struct {
		name    string
		in      raw
		typ     string // map or program type
		outcome string
		reason  string
		check   func(t *testing.T, e *Event)
	}{
		{"hash made", raw{cmd: cmdMapCreate, ret: 5, fields: map[int]uint32{offMapType: 1}, name: "counts", token: &demo, object: true, objType: 1, objID: 42, tokenDev: 52},
			"hash", OutcomeOK, "", func(t *testing.T, e *Event) {
				if e.MapID != 42 || e.Name != "counts" || e.Errno != "" || e.Token.BPFFSDev != "0:52" ||
					strings.Join(e.Token.AllowedMaps, ":") != "hash:array" || e.Token.FD != 4 || e.Comm != "loader" {
					t.Errorf("%+v %+v", e, e.Token)
				}
			}},
		{"ringbuf not delegated", raw{cmd: cmdMapCreate, ret: eperm, fields: map[int]uint32{offMapType: 27}, token: &demo},
			"ringbuf", OutcomeDenied, "map type ringbuf not delegated", func(t *testing.T, e *Event) {
				if e.Errno != "EPERM" || e.MapID != 0 {
					t.Errorf("%+v", e)
				}
			}},
		{"covered but refused", raw{cmd: cmdMapCreate, ret: eperm, fields: map[int]uint32{offMapType: 1}, token: &demo},
			"hash", OutcomeDenied, "capability missing", nil},
		{"program type not delegated", raw{cmd: cmdProgLoad, ret: eperm, fields: map[int]uint32{offProgType: 6, offProgAttach: 37}, token: &demo},
			"xdp", OutcomeDenied, "program type xdp not delegated", nil},
		{"attach type not delegated", raw{cmd: cmdProgLoad, ret: eperm, fields: map[int]uint32{offProgType: 1}, token: &noAttach},
			"socket_filter", OutcomeDenied, "attach type cgroup_inet_ingress not delegated", nil},
		{"command not delegated", raw{cmd: cmdProgLoad, ret: eperm, fields: map[int]uint32{offProgType: 1}, token: &mapsOnly},
			"socket_filter", OutcomeDenied, "command prog_load not delegated", nil},
		{"no token", raw{cmd: cmdMapCreate, ret: eperm, fields: map[int]uint32{offMapType: 1}},
			"hash", OutcomeDenied, "no token", func(t *testing.T, e *Event) {
				if e.Token != nil {
					t.Errorf("token %+v", e.Token)
				}
			}},
		{"command that takes no token", raw{cmd: 8, ret: eperm},
			"", OutcomeDenied, "capability missing (prog_attach takes no token)", nil},
		{"token_create refused", raw{cmd: 36, ret: eperm},
			"", OutcomeDenied, "capability missing", nil},
		{"verifier", raw{cmd: cmdProgLoad, ret: -int64(unix.EACCES), fields: map[int]uint32{offProgType: 1}, token: &demo},
			"socket_filter", OutcomeFailed, "permission denied", nil},
		{"bad argument before the delegation check", raw{cmd: cmdMapCreate, ret: -int64(unix.EINVAL), fields: map[int]uint32{offMapType: 27}, token: &demo},
			"ringbuf", OutcomeFailed, "invalid argument (map type ringbuf not delegated)", nil},
		{"fd that is no token", raw{cmd: cmdMapCreate, ret: -int64(unix.EBADF), fields: map[int]uint32{offMapType: 1}, tokenFD: 7},
			"hash", OutcomeFailed, "bad file descriptor (fd 7 is not a BPF token)", nil},
		{"kernel's type wins", raw{cmd: cmdMapCreate, ret: 3, fields: map[int]uint32{offMapType: 1}, token: &demo, object: true, objType: 2, objID: 9},
			"array", OutcomeOK, "", nil},
		{"program made", raw{cmd: cmdProgLoad, ret: 6, fields: map[int]uint32{offProgType: 1}, name: "filter", token: &demo, object: true, objType: 1, objAtt: 0, objID: 77},
			"socket_filter", OutcomeOK, "", func(t *testing.T, e *Event) {
				if e.ProgID != 77 || e.AttachType != "cgroup_inet_ingress" || e.Name != "filter" {
					t.Errorf("%+v", e)
				}
			}},
		{"short attr", raw{cmd: cmdMapCreate, ret: eperm, attrLen: 2},
			"", OutcomeDenied, "no token", nil},
		{"unknown type and bad name", raw{cmd: cmdMapCreate, ret: eperm, fields: map[int]uint32{offMapType: 200}, name: "a\xffb", token: &demo},
			"200", OutcomeDenied, "map type 200 not delegated", func(t *testing.T, e *Event) {
				if e.Name != "a?b" {
					t.Errorf("name %q", e.Name)
				}
			}},
		{"ia32", raw{cmd: cmdMapCreate, ret: eperm, fields: map[int]uint32{offMapType: 27}, token: &demo, abi: evCompat},
			"ringbuf", OutcomeDenied, "map type ringbuf not delegated", func(t *testing.T, e *Event) {
				if e.ABI != "ia32" {
					t.Errorf("ABI %q", e.ABI)
				}
			}},
		{"x32 on a kernel without it", raw{cmd: cmdMapCreate, ret: -int64(unix.ENOSYS), fields: map[int]uint32{offMapType: 27}, token: &demo, abi: evX32},
			"ringbuf", OutcomeFailed, "the kernel takes no x32 system calls", func(t *testing.T, e *Event) {
				if e.ABI != "x32" || e.Errno != "ENOSYS" {
					t.Errorf("ABI %q errno %q", e.ABI, e.Errno)
				}
			}},
		{"x86-64 ENOSYS is no ABI's", raw{cmd: cmdMapCreate, ret: -int64(unix.ENOSYS), fields: map[int]uint32{offMapType: 1}, token: &demo},
			"hash", OutcomeFailed, "function not implemented", func(t *testing.T, e *Event) {
				if e.ABI != "" {
					t.Errorf("ABI %q", e.ABI)
				}
			}},
		{"unknown errno", raw{cmd: cmdMapCreate, ret: -4000, fields: map[int]uint32{offMapType: 1}, token: &demo},
			"hash", OutcomeFailed, "errno 4000", func(t *testing.T, e *Event) {
				if e.Errno != "4000" {
					t.Errorf("errno %q", e.Errno)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(names)
			e := d.decode(tc.in.event())
			if typ := e.MapType + e.ProgType; typ != tc.typ || e.Outcome != tc.outcome || e.Reason != tc.reason {
				t.Errorf("got %q %s %q, want %q %s %q", typ, e.Outcome, e.Reason, tc.typ, tc.outcome, tc.reason)
			}
			if e.Pid != 10 || e.Tid != 11 || e.UserNS != 4026532841 || e.CgroupID != 7 || e.Ret != tc.in.ret {
				t.Errorf("ids: %+v", e)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

func TestDev(t *testing.T) {
	for in, want := range map[uint32]string{0: "0:0", 52: "0:52", 8<<20 | 1: "8:1", 259<<20 | 1048575: "259:1048575"} {
		if got := dev(in); got != want {
			t.Errorf("dev(%#x) = %s, want %s", in, got, want)
		}
	}
}
