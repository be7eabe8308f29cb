package delegate

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseMask(t *testing.T) {
	n := BuiltinNames()
	for _, tc := range []struct {
		kind Kind
		in   string
		want uint64
	}{
		{Cmds, "map_create", 1 << 0},
		{Cmds, "MAP_CREATE", 1 << 0},
		{Cmds, "BPF_MAP_CREATE", 1 << 0},
		{Cmds, "bpf_prog_load", 1 << 5},
		{Cmds, "prog_load:map_create", 1<<5 | 1},
		{Cmds, "prog_load:prog_load", 1 << 5},
		{Cmds, "prog_run", 1 << 10}, // alias of prog_test_run
		{Cmds, "0x3", 3},
		{Cmds, "0X3", 3},
		{Cmds, "3", 3},
		{Cmds, "+3", 3},
		{Cmds, "010", 8}, // kstrtou64 base 0: octal
		{Cmds, "0", 0},
		{Cmds, "0x1:prog_load", 1 | 1<<5},
		{Cmds, "prog_load:0x1", 1 | 1<<5}, // the kernel would keep only 0x1; bpfgate ORs
		{Cmds, "any", ^uint64(0)},
		{Cmds, "ANY", ^uint64(0)},
		{Maps, "hash:array", 1<<1 | 1<<2},
		{Maps, "BPF_MAP_TYPE_LPM_TRIE", 1 << 11},
		{Maps, "cgroup_storage", 1 << 19},
		{Progs, "socket_filter", 1 << 1},
		{Progs, "BPF_PROG_TYPE_XDP", 1 << 6},
		{Attachs, "cgroup_inet_ingress", 1},
		{Attachs, "BPF_XDP", 1 << 37},
		{Attachs, "0x8000000000000000", 1 << 63},
		{Cmds, "18446744073709551615", ^uint64(0)},
	} {
		got, err := n.ParseMask(tc.kind, tc.in)
		if err != nil {
			t.Errorf("%s %q: %v", tc.kind, tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s %q = %#x, want %#x", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestParseMaskErrors(t *testing.T) {
	n := BuiltinNames()
	for _, tc := range []struct {
		kind    Kind
		in      string
		want    error
		message string
	}{
		{Cmds, "", ErrEmpty, "delegate_cmds: empty element"},
		{Cmds, "prog_load::map_create", ErrEmpty, "empty element"},
		{Cmds, "prog_load:", ErrEmpty, "empty element"},
		{Cmds, "prog_lod", ErrUnknownName, `delegate_cmds: unknown command "prog_lod"; did you mean prog_load`},
		{Maps, "hsah", ErrUnknownName, `unknown map type "hsah"; did you mean hash`},
		{Progs, "sockfilter", ErrUnknownName, "socket_filter"},
		{Attachs, "ingress", ErrUnknownName, "cgroup_inet_ingress"},
		{Cmds, "-1", ErrUnknownName, `"-1"`},
		{Cmds, "0x", ErrUnknownName, `"0x"`},
		{Cmds, "08", ErrUnknownName, `"08"`},
		{Cmds, "0b11", ErrUnknownName, `"0b11"`},
		{Cmds, "1 ", ErrUnknownName, `"1 "`},
		{Cmds, "18446744073709551616", ErrRange, "does not fit in 64 bits"},
		{Cmds, "xyzzyplugh", ErrUnknownName, "no such name"},
	} {
		_, err := n.ParseMask(tc.kind, tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s %q: error %v, want %v", tc.kind, tc.in, err, tc.want)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Option != tc.kind.Option() {
			t.Errorf("%s %q: error %v is not a ParseError for %s", tc.kind, tc.in, err, tc.kind.Option())
		}
		if !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%s %q: error %q does not say %q", tc.kind, tc.in, err, tc.message)
		}
	}
}

func TestParseList(t *testing.T) {
	n := BuiltinNames()
	got, err := n.ParseList(Cmds, " map_create, prog_load :btf_load")
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(1 | 1<<5 | 1<<18); got != want {
		t.Fatalf("got %#x, want %#x", got, want)
	}
	if _, err := n.ParseList(Cmds, "map_create,,prog_load"); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty element: got %v", err)
	}
	// The kernel's syntax must not accept ',' inside one option.
	if _, err := n.ParseMask(Cmds, "map_create,prog_load"); !errors.Is(err, ErrUnknownName) {
		t.Fatalf("comma in kernel syntax: got %v", err)
	}
}

func TestFormatMask(t *testing.T) {
	n := BuiltinNames()
	for _, tc := range []struct {
		kind Kind
		in   uint64
		want string
	}{
		{Cmds, 0, ""},
		{Cmds, 1 | 1<<5, "map_create:prog_load"},
		{Cmds, 3 | 1<<5, "map_create:map_lookup_elem:prog_load"},
		{Cmds, 1 << 10, "prog_test_run"},
		{Cmds, ^uint64(0), "any"},
		{Cmds, n.Enums[Cmds].Any(), "any"},
		{Cmds, 1 << 63, ""}, // unknown bits only: not shown at all
		{Cmds, 1<<63 | 1, "map_create"},
		{Maps, 1 << 19, "cgroup_storage_deprecated"},
		{Attachs, 1 << 37, "xdp"},
		{Attachs, 1 << 60, ""},
	} {
		if got := n.FormatMask(tc.kind, tc.in); got != tc.want {
			t.Errorf("%s %#x = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestFormatUnnamedBitsAsHex(t *testing.T) {
	// A kernel whose enum has a hole prints the bit in hex after the names.
	n := &Names{}
	n.Enums[Cmds] = newEnum(Cmds, []enumerator{{"BPF_A", 0}, {"BPF_C", 2}, {"__MAX_BPF_CMD", 4}})
	if got, want := n.FormatMask(Cmds, 0b1111), "any"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, want := n.FormatMask(Cmds, 0b1011), "a:0xa"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, want := n.FormatMask(Cmds, 0b1_0000), ""; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestFormatOptions(t *testing.T) {
	n := BuiltinNames()
	s := Set{Cmds: 1 | 1<<5 | 1<<18, Maps: 1<<1 | 1<<2, Progs: 1 << 1, Attachs: 1}
	want := "delegate_cmds=map_create:prog_load:btf_load,delegate_maps=hash:array,delegate_progs=socket_filter,delegate_attachs=cgroup_inet_ingress"
	if got := n.FormatOptions(s); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	back, err := n.ParseOptions("rw,uid=5," + want + ",delegate_cmds=0x2")
	if err != nil {
		t.Fatal(err)
	}
	s.Cmds |= 2
	if back != s {
		t.Fatalf("round trip: got %+v, want %+v", back, s)
	}
}

func TestLint(t *testing.T) {
	n := BuiltinNames()
	codes := func(s Set) []string {
		var out []string
		for _, w := range n.Lint(s) {
			out = append(out, w.Code)
		}
		return out
	}
	mustSet := func(cmds, maps, progs, attachs string) Set {
		s, err := n.SetFlags(cmds, maps, progs, attachs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		set  Set
		want []string
	}{
		{"clean", mustSet("map_create:prog_load:btf_load", "hash", "socket_filter", "cgroup_inet_ingress"), nil},
		{"socket filter without ingress", mustSet("map_create:prog_load:btf_load", "", "socket_filter", ""), []string{"attach-type-zero"}},
		{"sk_lookup without its attach type", mustSet("map_create:prog_load:btf_load", "", "sk_lookup", "cgroup_inet_ingress"), []string{"missing-attach-type"}},
		{"prog_load alone", mustSet("prog_load", "", "xdp", "xdp"), []string{"prog-load-without-btf-load", "prog-load-without-map-create"}},
		{"cmds any", mustSet("any", "", "", ""), []string{"cmds-any"}},
		{"maps without map_create", mustSet("btf_load", "hash", "", ""), []string{"maps-without-map-create"}},
		{"progs without prog_load", mustSet("map_create", "", "xdp", "xdp"), []string{"progs-without-prog-load"}},
		{"attachs without progs", mustSet("map_create", "", "", "xdp"), []string{"attachs-without-progs"}},
	} {
		got := codes(tc.set)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if ws := LintOption(Cmds, "prog_load:0x1"); len(ws) != 1 || ws[0].Code != "number-after-names" {
		t.Errorf("LintOption: got %v", ws)
	}
	if ws := LintOption(Cmds, "0x1:prog_load"); len(ws) != 0 {
		t.Errorf("LintOption leading number: got %v", ws)
	}
}

func TestNamesFromKernelMatchBuiltin(t *testing.T) {
	n, err := KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	if n.Source == "builtin" {
		// testutil.Skip, which imports this package: under CI=true a skip
		// is a failure.
		if os.Getenv("CI") == "true" {
			t.Fatal("no kernel BTF (/sys/kernel/btf/vmlinux)")
		}
		t.Skip("no kernel BTF (/sys/kernel/btf/vmlinux)")
	}
	// Every name the running kernel has must resolve the same way, and
	// every kind must have a guard.
	for _, k := range Kinds {
		if n.Enums[k].Max == 0 || len(n.Enums[k].Values) == 0 {
			t.Fatalf("%s: empty enum from %s", k, n.Source)
		}
		for _, v := range n.Enums[k].Values {
			got, ok := n.Lookup(k, v.Name)
			if !ok || got != v.Value {
				t.Errorf("%s: Lookup(%s) = %d, %v", k, v.Name, got, ok)
			}
		}
	}
}
