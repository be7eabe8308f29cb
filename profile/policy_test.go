package profile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"
)

func TestPolicyFailsClosed(t *testing.T) {
	n := delegate.BuiltinNames()
	const counter = "profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hash]\n"
	for _, tc := range []struct {
		name     string
		file     *string // nil: no file at all
		symlink  bool    // the path is a dangling symlink
		optional bool
		allowed  []string // the profiles Find accepts
		loadErr  string   // LoadPolicy fails with this
		builtin  bool
	}{
		{name: "no file at the default path", optional: true, allowed: []string{"demo", "net", "trace"}, builtin: true},
		{name: "no file at an explicit path", loadErr: "no such file or directory"},
		{name: "dangling symlink at the default path", symlink: true, optional: true, loadErr: "no such file or directory"},
		{name: "empty profiles", file: ptr("profiles: {}\n"), optional: true},
		{name: "empty file", file: ptr(""), optional: true},
		{name: "other sections only", file: ptr("run:\n  pool: 1\n"), optional: true},
		{name: "one profile", file: ptr(counter), optional: true, allowed: []string{"counter"}},
		{name: "a profile named like a built-in replaces it alone",
			file: ptr("profiles:\n  demo:\n    cmds: [map_create]\n"), optional: true, allowed: []string{"demo"}},
		{name: "does not parse", file: ptr("profiles:\n  counter:\n    maps: [hsah]\n"), optional: true,
			loadErr: `config.yaml:3: profiles.counter.maps: delegate_maps: unknown map type "hsah"`},
		{name: "not YAML", file: ptr("profiles: [\n"), optional: true, loadErr: "config.yaml: yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if tc.file != nil {
				if err := os.WriteFile(path, []byte(*tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.symlink {
				if err := os.Symlink(filepath.Join(filepath.Dir(path), "gone"), path); err != nil {
					t.Fatal(err)
				}
			}
			pol, err := LoadPolicy(path, n, tc.optional)
			if tc.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.loadErr) || !strings.Contains(err.Error(), "no profile is allowed") {
					t.Fatalf("got %v, want an error with %q", err, tc.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pol.Builtin != tc.builtin {
				t.Errorf("builtin %v, want %v", pol.Builtin, tc.builtin)
			}
			want := "profiles from " + path
			if tc.builtin {
				want = "built-in profiles (no " + path + ")"
			}
			if got := pol.Describe(); got != want {
				t.Errorf("Describe: %q, want %q", got, want)
			}
			for _, name := range []string{"demo", "net", "trace", "counter"} {
				p, err := pol.Find(name)
				if slices.Contains(tc.allowed, name) {
					if err != nil || p.Name != name {
						t.Errorf("%s: %v", name, err)
					}
					if name == "demo" && !tc.builtin && p.Builtin {
						t.Errorf("demo is the built-in one, not the file's")
					}
					continue
				}
				if !errors.Is(err, ErrUnknown) {
					t.Errorf("%s allowed: %v", name, err)
				}
				if len(tc.allowed) == 0 && (!errors.Is(err, ErrNoProfiles) || !strings.Contains(err.Error(), path)) {
					t.Errorf("%s: %v does not say the policy at %s allows none", name, err, path)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }
