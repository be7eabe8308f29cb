package profile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"
)

// FuzzLoadProfiles feeds config files to Load: it must never panic,
// every error must point into the file, and every profile it accepts must be
// usable: its names resolve, its path and mode are valid, and no two
// profiles share a name.
func FuzzLoadProfiles(f *testing.F) {
	for _, seed := range []string{
		// The README's and docs/containers.md's examples.
		"profiles:\n  counter:\n    description: counts packets with XDP\n    cmds: [map_create, prog_load, btf_load]\n" +
			"    maps: hash:array            # a list or a ':'-joined string\n    progs: [xdp]\n    attachs: [xdp]\n" +
			"    caps: [CAP_NET_ADMIN]       # optional\n",
		"profiles:\n  counter:\n    cmds: [map_create, prog_load, btf_load]\n    maps: [hash, array]\n    progs: [xdp]\n" +
			"    attachs: [xdp]\n    path: /sys/fs/bpf     # default\n    uid: 0\n    gid: 0\n    mode: \"0700\"\n",
		"profiles:\n  demo:\n    description: hash and array maps, socket filters\n    cmds: [map_create, prog_load, btf_load]\n" +
			"    maps: [hash, array]\n    progs: [socket_filter]\n    attachs: [cgroup_inet_ingress]\n  xdp:\n" +
			"    cmds: [map_create, prog_load, btf_load]\n    maps: [lru_hash]\n    progs: [xdp]\n    attachs: [xdp]\n",
		"profiles: {}\n", "", "profiles:\n", "other: 1\nprofiles:\n  a: {cmds: '0x3', maps: any}\n",
		"profiles:\n  x:\n    maps: hsah\n", "profiles:\n  x: 3\n", "profiles: [a]\n",
		"profiles:\n  x:\n    progs: {a: b}\n", "profiles:\n  x:\n    path: /sys/../etc\n",
		"profiles:\n  x:\n    mode: \"0999\"\n", "profiles:\n  x:\n    uid: -1\n",
		"profiles:\n  a: &p {cmds: map_create}\n  b: *p\n", "profiles:\n  a: {}\n  a: {}\n",
		"a: &a [*a, *a]\n", "--- \n...\n", "profiles: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(seed))
	}
	n := delegate.BuiltinNames()
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ps, err := Load(path, n)
		if err != nil {
			if len(data) <= MaxConfigSize && errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a file that exists: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if seen[p.Name] {
				t.Fatalf("two profiles named %q accepted", p.Name)
			}
			seen[p.Name] = true
			if p.Builtin || p.Source != path {
				t.Fatalf("profile %q: builtin %v, source %q", p.Name, p.Builtin, p.Source)
			}
			if _, skipped, err := p.Resolve(n); err != nil || len(skipped) > 0 {
				t.Fatalf("accepted profile %q does not resolve: %v (skipped %v)", p.Name, err, skipped)
			}
			if bp := p.BPFFSPath(); !filepath.IsAbs(bp) || filepath.Clean(bp) != bp || bp == "/" {
				t.Fatalf("accepted profile %q has path %q", p.Name, bp)
			}
			if p.Mode != nil && *p.Mode > 0o7777 {
				t.Fatalf("accepted profile %q has mode %o", p.Name, *p.Mode)
			}
		}
	})
}
