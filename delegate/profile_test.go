package delegate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltinProfilesResolveCleanly(t *testing.T) {
	n := BuiltinNames()
	for _, p := range BuiltinProfiles() {
		set, skipped, err := p.Resolve(n)
		if err != nil || len(skipped) > 0 {
			t.Errorf("%s: %v, skipped %v", p.Name, err, skipped)
		}
		if set.IsZero() {
			t.Errorf("%s: delegates nothing", p.Name)
		}
		if ws := n.Lint(set); len(ws) > 0 {
			t.Errorf("%s: lint: %v", p.Name, ws)
		}
	}
	if _, err := FindProfile(BuiltinProfiles(), "nope"); !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), "demo") {
		t.Errorf("unknown profile: %v", err)
	}
}

func TestLoadProfiles(t *testing.T) {
	n := BuiltinNames()
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write(`profiles:
  counter:
    description: counts packets
    cmds: [map_create, prog_load, btf_load]
    maps: hash:array
    progs: [xdp]
    attachs: xdp
    caps: [CAP_NET_ADMIN]
`)
	ps, err := LoadProfiles(p, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "counter" || ps[0].Cmds != "map_create:prog_load:btf_load" || ps[0].Caps[0] != "CAP_NET_ADMIN" {
		t.Fatalf("got %+v", ps)
	}
	set, _, err := ps[0].Resolve(n)
	if err != nil || n.FormatMask(Progs, set.Progs) != "xdp" {
		t.Fatalf("resolve: %v %+v", err, set)
	}

	for _, tc := range []struct{ body, want string }{
		{"profiles:\n  x:\n    maps: hsah\n", `config.yaml:3: profiles.x.maps: delegate_maps: unknown map type "hsah"; did you mean hash?`},
		{"profiles:\n  x:\n    colour: red\n", "config.yaml:3: profiles.x.colour: unknown key"},
		{"profiles:\n  x: 3\n", "config.yaml:2: profiles.x: want a mapping"},
		{"profiles: [a]\n", "config.yaml:1: profiles: want a mapping of profile names"},
		{"profiles:\n  x:\n    progs: {a: b}\n", "config.yaml:3: profiles.x"},
	} {
		_, err := LoadProfiles(write(tc.body), n)
		var ce *ConfigError
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		} else if !errors.As(err, &ce) {
			t.Errorf("%q: %T is not a ConfigError", tc.body, err)
		}
	}
}
