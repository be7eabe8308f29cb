package containers

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runcRanges counts the host id ranges handed to runc bundles.
var runcRanges atomic.Uint32

// bundle writes an OCI bundle for plain runc whose config.json carries
// the bpfgate hook, as a runtime without CDI or hooks.d would be given.
// With userns, the container gets a host id range no other one uses.
func (e *env) bundle(t *testing.T, profile string, userns bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Root = &specs.Root{Path: filepath.Join(e.dir, "rootfs"), Readonly: true}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/ebpfcheck"}
	c := spec.Process.Capabilities
	for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted} {
		*set = append(*set, "CAP_BPF")
	}
	// The cgroup mount needs a cgroup namespace the hybrid layout here lacks.
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Type == "cgroup" })
	if userns {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		n := runcRanges.Add(1) - 1
		if n >= runcIDCount {
			t.Fatal("out of host id ranges for runc bundles")
		}
		idmap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: runcIDStart + n*runcIDSize, Size: runcIDSize}}
		spec.Linux.UIDMappings, spec.Linux.GIDMappings = idmap, idmap
	}
	spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{
		Path: e.bpfgate,
		Args: []string{"bpfgate", "--config", e.config, "oci-hook", "--profile", profile},
	}}}
	data, err = json.MarshalIndent(&spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRuncBundle(t *testing.T) {
	e := setup(t)
	dir := e.bundle(t, "demo", true)
	out, err := run("runc", "--root", filepath.Join(e.dir, "runc"), "run", "--bundle", dir, "bpfgate-e2e-"+filepath.Base(filepath.Dir(dir)))
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	expect(t, res, demoAllowed)
}

func TestRuncBundleWithoutUserNS(t *testing.T) {
	e := setup(t)
	dir := e.bundle(t, "demo", false)
	before := bpfMounts(t)
	_, err := run("runc", "--root", filepath.Join(e.dir, "runc"), "run", "--bundle", dir, "bpfgate-e2e-"+filepath.Base(filepath.Dir(dir)))
	// In runc's terms: what to write in config.json, no podman flag.
	const fix = "has no user namespace of its own, so no BPF token can work in it: give it one in config.json: add a namespace of type user to linux.namespaces"
	if err == nil || !strings.Contains(err.Error(), fix) || strings.Contains(err.Error(), "podman") {
		t.Fatalf("got %v, want an error with %q", err, fix)
	}
	if after := bpfMounts(t); after != before {
		t.Errorf("host bpffs mounts: %d before, %d after", before, after)
	}
}
