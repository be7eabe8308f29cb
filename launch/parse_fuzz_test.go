package launch

import (
	"fmt"
	"slices"
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
