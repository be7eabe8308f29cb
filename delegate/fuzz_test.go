package delegate

import (
	"strings"
	"testing"
)

// FuzzParseMask checks that parsing never panics and that printing a parsed
// mask parses back to the same mask (modulo the bits the kernel ignores).
func FuzzParseMask(f *testing.F) {
	for _, seed := range []string{
		"any", "map_create:prog_load", "0x3:prog_load", "prog_load:0x1", "BPF_PROG_LOAD",
		"010", "+7", "0x", "", "::", "hash,array", " xdp ", "18446744073709551616",
		"cgroup_storage", "0xffffffffffffffff", "ANY", "bpf_map_type_hash",
	} {
		for k := range 4 {
			f.Add(k, seed)
		}
	}
	n := BuiltinNames()
	f.Fuzz(func(t *testing.T, k int, in string) {
		kind := Kind(((k % 4) + 4) % 4)
		for _, parse := range []func(Kind, string) (uint64, error){n.ParseMask, n.ParseList} {
			m, err := parse(kind, in)
			if err != nil {
				if err.Error() == "" || !strings.Contains(err.Error(), kind.Option()) {
					t.Fatalf("error %q does not name the option", err)
				}
				continue
			}
			out := n.FormatMask(kind, m)
			want := m & n.Enums[kind].Any()
			if out == "" {
				if want != 0 {
					t.Fatalf("%q: mask %#x printed empty", in, m)
				}
				continue
			}
			back, err := n.ParseMask(kind, out)
			if err != nil {
				t.Fatalf("%q printed as %q, which does not parse: %v", in, out, err)
			}
			if back&n.Enums[kind].Any() != want {
				t.Fatalf("%q: parse(print(%#x)) = %#x (printed %q)", in, m, back, out)
			}
		}
	})
}
