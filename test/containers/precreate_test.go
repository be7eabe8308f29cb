package containers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/internal/seccomp"
)

var (
	precreateOnce sync.Once
	precreateDir  string
	precreateErr  error
)

// precreateHooks is a hooks.d directory with only the precreate entry, as
// `bpfgate oci-hook hooks-d --stage precreate` writes it: the createRuntime
// hook that mounts the bpffs comes from the precreate hook itself.
func (e *env) precreateHooks(t *testing.T) string {
	t.Helper()
	precreateOnce.Do(func() {
		precreateDir = filepath.Join(e.dir, "hooks-precreate.d")
		_, precreateErr = run(e.bpfgate, "--config", e.config, "oci-hook", "hooks-d", "--stage", "precreate",
			"-o", filepath.Join(precreateDir, "bpfgate-precreate.json"), "--log", filepath.Join(e.dir, "precreate.log"))
	})
	if precreateErr != nil {
		t.Fatal(precreateErr)
	}
	return precreateDir
}

// TestPodmanPrecreate: with the precreate entry installed, a container asks
// for a profile with the annotation alone; it needs a user namespace and no
// --cap-add or seccomp flag.
func TestPodmanPrecreate(t *testing.T) {
	e := setup(t)
	hooks := e.precreateHooks(t)
	before := bpfMounts(t)
	for _, tc := range []struct {
		name  string
		flags []string
		want  map[string]string
	}{
		{"demo", []string{"--hooks-dir", hooks, autoUserNS, "--annotation", "io.bpfgate.profile=demo"}, demoAllowed},
		// xdp needs CAP_NET_ADMIN too: the profile's caps, not only CAP_BPF.
		{"xdp", []string{"--hooks-dir", hooks, autoUserNS, "--annotation", "io.bpfgate.profile=xdp"},
			map[string]string{"map/lru_hash": "ok", "prog/xdp": "ok", "map/hash": "EPERM", "prog/socket_filter": "EPERM"}},
		// With the createRuntime entry installed as well, the bpffs is
		// mounted once.
		{"both entries", []string{"--hooks-dir", hooks, "--hooks-dir", e.hooks, autoUserNS, "--annotation", "io.bpfgate.profile=demo"}, demoAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.podmanRun(t, tc.flags...)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, res, tc.want)
		})
	}
	if after := bpfMounts(t); after != before {
		t.Errorf("host bpffs mounts: %d before, %d after", before, after)
	}
}

// ociConfig starts a container and reads the config.json podman gave runc.
func (e *env) ociConfig(t *testing.T, flags ...string) *specs.Spec {
	t.Helper()
	id := e.podmanStart(t, flags...)
	out, err := run("podman", "inspect", "--format", "{{.OCIConfigPath}}", id)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	return &spec
}

// TestPodmanPrecreateConfig: what the precreate hook changes in the config
// runc gets, and that it changes nothing for a container without the
// annotation: its config is the one podman writes without the hook.
func TestPodmanPrecreateConfig(t *testing.T) {
	e := setup(t)
	hooks := e.precreateHooks(t)
	bpfgateHooks := func(s *specs.Spec) int {
		n := 0
		if s.Hooks != nil {
			for _, h := range s.Hooks.CreateRuntime {
				if h.Path == e.bpfgate {
					n++
				}
			}
		}
		return n
	}
	allowed := func(s *specs.Spec) bool {
		res, err := seccomp.EvalOCI(s.Linux.Seccomp)
		if err != nil {
			t.Fatal(err)
		}
		return res.Allowed()
	}

	annotated := e.ociConfig(t, "--hooks-dir", hooks, autoUserNS, "--annotation", "io.bpfgate.profile=demo")
	c := annotated.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Contains(set, "CAP_BPF") {
			t.Errorf("annotated: %s: %v, want CAP_BPF", name, set)
		}
	}
	if len(c.Ambient) > 0 {
		t.Errorf("annotated: ambient %v: podman --cap-add adds none for root", c.Ambient)
	}
	if !allowed(annotated) || bpfgateHooks(annotated) != 1 {
		t.Errorf("annotated: bpf(2) allowed %v, %d bpfgate hooks", allowed(annotated), bpfgateHooks(annotated))
	}

	plain := e.ociConfig(t, "--hooks-dir", hooks, autoUserNS)
	without := e.ociConfig(t, autoUserNS)
	if slices.Contains(plain.Process.Capabilities.Bounding, "CAP_BPF") || allowed(plain) || bpfgateHooks(plain) != 0 {
		t.Errorf("not annotated: caps %v, bpf(2) allowed %v, %d bpfgate hooks", plain.Process.Capabilities.Bounding, allowed(plain), bpfgateHooks(plain))
	}
	// Only what differs between any two containers may differ.
	for _, s := range []*specs.Spec{plain, without} {
		s.Hostname, s.Root.Path, s.Linux.CgroupsPath, s.Linux.UIDMappings, s.Linux.GIDMappings = "", "", "", nil, nil
		s.Mounts = nil // bind mounts of the container's own files
		delete(s.Annotations, "io.kubernetes.cri-o.Created")
		// podman orders the environment as a map iteration gives it.
		s.Process.Env = slices.DeleteFunc(s.Process.Env, func(v string) bool { return strings.HasPrefix(v, "HOSTNAME=") })
		slices.Sort(s.Process.Env)
	}
	a, _ := json.Marshal(plain)
	b, _ := json.Marshal(without)
	if string(a) != string(b) {
		t.Errorf("the precreate hook changed an unannotated container's config:\n%s\n%s", a, b)
	}
	log, _ := os.ReadFile(filepath.Join(e.dir, "precreate.log"))
	if strings.Count(string(log), `"profile":"demo"`) < 1 {
		t.Errorf("precreate log: %s", log)
	}
}

// TestPodmanPrecreateRefusals: a container the precreate hook cannot help
// is refused with a message podman shows, in podman's terms.
func TestPodmanPrecreateRefusals(t *testing.T) {
	e := setup(t)
	hooks := e.precreateHooks(t)
	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"no user namespace", []string{"--annotation", "io.bpfgate.profile=demo"},
			[]string{"has no user namespace of its own", "podman run --userns=auto"}},
		{"profile the host does not define", []string{autoUserNS, "--annotation", "io.bpfgate.profile=net"},
			[]string{`profile not allowed by the host: unknown profile "net" (known: demo, linked, xdp)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bpfMounts(t)
			_, err := e.podmanRun(t, append([]string{"--hooks-dir", hooks}, tc.flags...)...)
			if err == nil {
				t.Fatal("the container ran")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v does not say %q", err, w)
				}
			}
			if after := bpfMounts(t); after != before {
				t.Errorf("host bpffs mounts: %d before, %d after", before, after)
			}
		})
	}
}

// TestPodmanPrecreateSpeed measures `podman run` of an annotated container
// (precreate hook, then the mount) against a plain one, in one run, taking
// turns, and reports the medians.
func TestPodmanPrecreateSpeed(t *testing.T) {
	e := setup(t)
	hooks := e.precreateHooks(t)
	const rounds = 7
	kinds := []struct {
		name  string
		flags []string
	}{
		{"plain", []string{"--hooks-dir", hooks, autoUserNS}},
		{"annotated", []string{"--hooks-dir", hooks, autoUserNS, "--annotation", "io.bpfgate.profile=demo"}},
	}
	took := make([][]time.Duration, len(kinds))
	for i := 0; i < rounds; i++ {
		for k, kind := range kinds {
			args := append(append([]string{"run", "--rm"}, kind.flags...), e.image, "true")
			start := time.Now()
			if _, err := run("podman", args...); err != nil {
				t.Fatal(err)
			}
			took[k] = append(took[k], time.Since(start))
		}
	}
	med := make([]time.Duration, len(kinds))
	for k := range kinds {
		sort.Slice(took[k], func(i, j int) bool { return took[k][i] < took[k][j] })
		med[k] = took[k][rounds/2]
	}
	t.Logf("podman run, median of %d: plain %v, annotated %v: ratio %.3f", rounds, med[0].Round(time.Millisecond), med[1].Round(time.Millisecond), float64(med[1])/float64(med[0]))
}
