package launch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseIDMap: --uid-map and --gid-map values never panic, and a parsed
// map printed as inside:host:count entries parses to the same map.
func FuzzParseIDMap(f *testing.F) {
	for _, seed := range []string{
		"0:100000:65536", "0:100000:1,1:100001:65535", " 0:1000:1 , 1:100000:65536 ", "0:42:1",
		"0:4294967295:4294967295", "4294967296:0:1", "0:0:0", "-1:0:1", "+1:2:3", "0x10:1:1", "",
		",", "0:1", "0:1:2:3", "a:b:c", "0:100000:65536,", "1_000:0:1", "0:1:1\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseIDMap(s)
		if err != nil {
			if !strings.Contains(err.Error(), "id map") {
				t.Fatalf("error does not say it is about an id map: %v", err)
			}
			return
		}
		if len(m) == 0 {
			t.Fatalf("%q: no error and no entries", s)
		}
		var parts []string
		for _, e := range m {
			if e.ContainerID < 0 || e.HostID < 0 || e.Size < 1 ||
				e.ContainerID > 1<<32-1 || e.HostID > 1<<32-1 || e.Size > 1<<32-1 {
				t.Fatalf("%q: entry %+v out of range", s, e)
			}
			parts = append(parts, fmt.Sprintf("%d:%d:%d", e.ContainerID, e.HostID, e.Size))
		}
		again, err := ParseIDMap(strings.Join(parts, ","))
		if err != nil || !slices.Equal(again, m) {
			t.Fatalf("%q parsed to %v, printed %q, parsed again to %v (%v)", s, m, strings.Join(parts, ","), again, err)
		}
	})
}

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
