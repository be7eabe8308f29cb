package record

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"
)

// attr builds a bpf_attr with the given little-endian u32 fields set.
func attr(size int, fields map[int]uint32) []byte {
	b := make([]byte, size)
	for off, v := range fields {
		binary.LittleEndian.PutUint32(b[off:], v)
	}
	return b
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  uint32
		attr []byte
		want Call
	}{
		{"map_create hash with token", cmdMapCreate, attr(80, map[int]uint32{0: 1, 16: flagTokenFD | 1, 76: 5}),
			Call{Cmd: cmdMapCreate, Token: true, Type: 1, HasType: true}},
		{"map_create without token", cmdMapCreate, attr(80, map[int]uint32{0: 27}),
			Call{Cmd: cmdMapCreate, Type: 27, HasType: true}},
		{"map_create cut before map_flags", cmdMapCreate, attr(80, map[int]uint32{0: 2, 16: flagTokenFD})[:16],
			Call{Cmd: cmdMapCreate, Type: 2, HasType: true}},
		{"map_create cut inside map_flags", cmdMapCreate, attr(80, map[int]uint32{0: 2, 16: flagTokenFD})[:19],
			Call{Cmd: cmdMapCreate, Token: true, Type: 2, HasType: true}},
		{"map_create cut inside map_type", cmdMapCreate, attr(80, map[int]uint32{0: 0x0201})[:1],
			Call{Cmd: cmdMapCreate, Type: 1, HasType: true}},
		{"prog_load socket_filter", cmdProgLoad, attr(AttrSize, map[int]uint32{0: 1, 44: flagTokenFD, 68: 0}),
			Call{Cmd: cmdProgLoad, Token: true, Type: 1, HasType: true, HasAttach: true}},
		{"prog_load tracing fentry", cmdProgLoad, attr(AttrSize, map[int]uint32{0: 26, 44: flagTokenFD | 0x20, 68: 24}),
			Call{Cmd: cmdProgLoad, Token: true, Type: 26, HasType: true, Attach: 24, HasAttach: true}},
		{"prog_load cut before expected_attach_type", cmdProgLoad, attr(AttrSize, map[int]uint32{0: 6, 44: flagTokenFD, 68: 37})[:68],
			Call{Cmd: cmdProgLoad, Token: true, Type: 6, HasType: true, HasAttach: true}},
		{"btf_load with token", cmdBTFLoad, attr(40, map[int]uint32{32: flagTokenFD}), Call{Cmd: cmdBTFLoad, Token: true}},
		{"btf_load without", cmdBTFLoad, attr(40, nil), Call{Cmd: cmdBTFLoad}},
		{"link_create xdp", cmdLinkCreate, attr(16, map[int]uint32{8: 37}), Call{Cmd: cmdLinkCreate, Attach: 37, HasAttach: true}},
		{"prog_attach cgroup_inet_egress", cmdProgAttach, attr(16, map[int]uint32{8: 1}), Call{Cmd: cmdProgAttach, Attach: 1, HasAttach: true}},
		{"token_create", cmdTokenCreate, attr(8, map[int]uint32{4: 3}), Call{Cmd: cmdTokenCreate}},
		{"raw_tracepoint_open", cmdRawTracepointOpen, attr(16, nil), Call{Cmd: cmdRawTracepointOpen}},
		{"empty attr", cmdProgLoad, nil, Call{Cmd: cmdProgLoad, HasType: true, HasAttach: true}},
		{"a command not decoded", 1, attr(32, map[int]uint32{0: 9}), Call{Cmd: 1}},
		{"garbage", cmdMapCreate, attr(AttrSize, map[int]uint32{0: 0xffffffff, 16: 0xffffffff}),
			Call{Cmd: cmdMapCreate, Token: true, Type: 0xffffffff, HasType: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decode(tc.cmd, tc.attr); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDelegationAndNotJudged(t *testing.T) {
	n := delegate.BuiltinNames()
	r := newRecord()
	for _, c := range []Call{
		{Cmd: cmdMapCreate, Token: true, Type: 1, HasType: true},
		{Cmd: cmdMapCreate, Token: true, Type: 2, HasType: true},
		{Cmd: cmdMapCreate, Type: 27, HasType: true},
		{Cmd: cmdProgLoad, Token: true, Type: 1, HasType: true, HasAttach: true},
		{Cmd: cmdProgLoad, Token: true, Type: 200, HasType: true, Attach: 70, HasAttach: true},
		{Cmd: cmdBTFLoad, Token: true},
		{Cmd: cmdLinkCreate, Attach: 37, HasAttach: true},
		{Cmd: cmdTokenCreate},
	} {
		r.add(c)
	}
	r.Unreadable = 2
	want := delegate.Set{Cmds: 1<<cmdMapCreate | 1<<cmdProgLoad | 1<<cmdBTFLoad, Maps: 1<<1 | 1<<2, Progs: 1 << 1, Attachs: 1 << 0}
	if got := r.Delegation(); got != want {
		t.Errorf("delegation %s, want %s", n.FormatOptions(got), n.FormatOptions(want))
	}
	nj := strings.Join(r.NotJudged(n), "\n")
	for _, s := range []string{"map_create ringbuf without a token: needs privilege a token cannot give",
		"prog_load unknown progs value 0xc8 (expected attach type unknown attachs value 0x46) with a token: a value no delegation can name",
		"2 call(s) whose bpf_attr could not be read"} {
		if !strings.Contains(nj, s) {
			t.Errorf("not judged lacks %q:\n%s", s, nj)
		}
	}
	if got := strings.Join(r.Attachments(n), ","); got != "link_create xdp" {
		t.Errorf("attachments %q", got)
	}
	if !r.UsedToken() {
		t.Error("UsedToken false")
	}
}

func TestMaxDistinct(t *testing.T) {
	r := newRecord()
	for i := range MaxDistinct + 10 {
		r.add(Call{Cmd: cmdMapCreate, Type: uint32(i), HasType: true})
		r.add(Call{Cmd: cmdMapCreate, Type: 0, HasType: true}) // a known one is still counted
	}
	if len(r.Calls) != MaxDistinct || r.Overflow != 10 {
		t.Errorf("%d distinct, %d overflow", len(r.Calls), r.Overflow)
	}
	if r.Calls[Call{Cmd: cmdMapCreate, HasType: true}] != MaxDistinct+11 {
		t.Errorf("known call counted %d times", r.Calls[Call{Cmd: cmdMapCreate, HasType: true}])
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(uint32(0), attr(80, map[int]uint32{0: 1, 16: flagTokenFD}))
	f.Add(uint32(5), attr(AttrSize, map[int]uint32{0: 1, 44: flagTokenFD, 68: 3}))
	f.Add(uint32(28), []byte{1, 2, 3})
	n := delegate.BuiltinNames()
	f.Fuzz(func(t *testing.T, cmd uint32, b []byte) {
		c := Decode(cmd, b)
		if c.Cmd != cmd {
			t.Fatalf("cmd %d decoded as %d", cmd, c.Cmd)
		}
		// Bytes past AttrSize never matter: Serve does not read them.
		if len(b) > AttrSize && Decode(cmd, b[:AttrSize]) != c {
			t.Fatal("bytes past AttrSize changed the result")
		}
		r := newRecord()
		r.add(c)
		_ = r.Delegation()
		_ = r.NotJudged(n)
		_ = Describe(n, c)
	})
}
