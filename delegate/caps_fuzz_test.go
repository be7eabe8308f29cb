package delegate

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseCaps: capability names and numbers never panic, give a valid
// capability number, and print back as something that parses to the same.
func FuzzParseCaps(f *testing.F) {
	for _, seed := range []string{
		"CAP_NET_ADMIN", "net_admin", "cap_bpf", "CAP_PERFMON", " CAP_SYS_ADMIN ", "39", "40", "63", "64", "-1",
		"", "CAP_", "CAP_63", "NET_ADMIN,BPF", "ɑ", "0x27", "+39",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCap(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error does not quote the input: %v", err)
			}
		} else {
			if c < 0 || c > 63 {
				t.Fatalf("%q parsed to capability %d", s, c)
			}
			if back, err := ParseCap(strconv.Itoa(int(c))); err != nil || back != c {
				t.Fatalf("%q parsed to %d, whose number parses to %d (%v)", s, c, back, err)
			}
			// What String prints (a name, or CAP_<n>) parses back.
			if back, err := ParseCap(c.String()); err != nil || back != c {
				t.Fatalf("%q parsed to %s, which parses to %d (%v)", s, c, back, err)
			}
		}
		// A list: entries as the profile caps field gives them.
		list := strings.Split(s, ",")
		caps, err := ParseCaps(list)
		if err != nil {
			return
		}
		nonEmpty := slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == "" })
		if len(caps) != len(nonEmpty) {
			t.Fatalf("%q: %d entries gave %d capabilities", s, len(nonEmpty), len(caps))
		}
		for i, x := range nonEmpty {
			if one, err := ParseCap(x); err != nil || one != caps[i] {
				t.Fatalf("%q: entry %q gave %d in the list, %d alone (%v)", s, x, caps[i], one, err)
			}
		}
	})
}
