package cdi_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/cdi"
	"github.com/bpfgate/bpfgate/delegate"
)

func TestSpecWriteList(t *testing.T) {
	profiles := append(delegate.BuiltinProfiles(),
		delegate.Profile{Name: "demo", Description: "overrides the built-in", Source: "config.yaml"},
		delegate.Profile{Name: "counter", Source: "config.yaml"})
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
		profiles []delegate.Profile
		hook     string
		want     string
	}{
		{"relative hook", delegate.BuiltinProfiles(), "bpfgate", "want an absolute path"},
		{"no profiles", nil, "/bin/bpfgate", "no profiles"},
		{"bad device name", []delegate.Profile{{Name: "a b"}}, "/bin/bpfgate", `profile "a b" cannot be a CDI device name`},
	} {
		_, err := cdi.Spec(tc.profiles, cdi.Hook{Path: tc.hook})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
