package cdi_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/bpfgate/bpfgate/cdi"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

func TestSpecWriteList(t *testing.T) {
	profiles := append(profile.Builtins(),
		profile.Profile{Name: "demo", Description: "overrides the built-in", Source: "config.yaml"},
		profile.Profile{Name: "counter", Source: "config.yaml"})
	hook := cdi.Hook{Path: "/usr/local/bin/bpfgate", Args: []string{"--log", "/var/log/bpfgate.log"}}
	spec, err := cdi.Spec(profiles, hook)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range spec.Devices {
		names = append(names, d.Name)
	}
	if !slices.Equal(names, []string{"counter", "demo", "net", "trace"}) {
		t.Fatalf("devices %v", names)
	}
	if spec.Kind != "bpfgate.dev/bpf" || spec.Version != "0.3.0" {
		t.Fatalf("kind %q version %q (podman 4.3 reads up to 0.5.0)", spec.Kind, spec.Version)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "bpfgate.yaml")
	if err := cdi.Write(spec, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), "hookName: createRuntime") {
		t.Fatalf("%v: %s", err, data)
	}
	devs, errs, err := cdi.List(dir)
	if err != nil || len(errs) != 0 {
		t.Fatalf("%v %v", err, errs)
	}
	if len(devs) != 4 || devs[1].Name != "bpfgate.dev/bpf=demo" || devs[1].Stage != "createRuntime" ||
		!slices.Equal(devs[1].HookArgs, []string{"bpfgate", "oci-hook", "--profile", "demo", "--log", "/var/log/bpfgate.log"}) ||
		devs[1].Spec != path {
		t.Fatalf("list: %+v", devs)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		profiles []profile.Profile
		hook     string
		want     string
	}{
		{"relative hook", profile.Builtins(), "bpfgate", "want an absolute path"},
		{"no profiles", nil, "/bin/bpfgate", "no profiles"},
		{"bad device name", []profile.Profile{{Name: "a b"}}, "/bin/bpfgate", `profile "a b" cannot be a CDI device name`},
	} {
		_, err := cdi.Spec(tc.profiles, cdi.Hook{Path: tc.hook})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	spec, err := cdi.Spec(profile.Builtins(), cdi.Hook{Path: "/usr/local/bin/bpfgate"})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "root only\n"
	for _, tc := range []struct {
		name  string
		file  string
		spec  *cdispec.Spec
		plant func(t *testing.T, path, victim string)
		want  string // "" for success
	}{
		{"pre-planted PATH.tmp symlink", "bpfgate.yaml", spec, func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, path+".tmp"); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"json", "bpfgate.json", spec, nil, ""},
		{"target is a symlink", "bpfgate.yaml", spec, func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link"},
		{"no extension", "bpfgate", spec, nil, "want a name ending in .yaml or .json"},
		{"invalid spec", "bpfgate.yaml", &cdispec.Spec{Version: "0.3.0", Kind: "nokind"}, nil, "would not be a valid spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.file)
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.plant != nil {
				tc.plant(t, path, victim)
			}
			err := cdi.Write(tc.spec, path)
			if data, _ := os.ReadFile(victim); string(data) != secret {
				t.Errorf("victim written: %q", data)
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			devs, errs, err := cdi.List(filepath.Dir(path))
			if err != nil || len(errs) != 0 || len(devs) != 3 {
				t.Fatalf("list: %v %v %+v", err, errs, devs)
			}
		})
	}
}

func TestHookStageIsTheHooks(t *testing.T) {
	if cdi.HookStage != ocihook.Stage {
		t.Errorf("cdi.HookStage %q, ocihook.Stage %q", cdi.HookStage, ocihook.Stage)
	}
}
