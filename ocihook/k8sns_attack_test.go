package ocihook

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/profile"
)

// TestRunAnnotationK8sNamespaces: a profile limited to some Kubernetes
// namespaces (k8s_namespaces) is refused when the container names it with
// the io.bpfgate.profile annotation (the hooks.d route). CRI-O copies every
// pod annotation into each of its containers' OCI annotations and runs
// hooks.d entries on them, so on a CRI-O node with bpfgate's hooks.d entry
// a pod of any namespace could name such a profile, and the hook would
// mount it: the NRI plugin and the DRA driver, which check the namespace,
// are not on that route. Given with --profile (CDI device, NRI) the
// profile passes this check; the namespace was checked by whoever put the
// device or hook there. The naive hook ran on until the mount.
func TestRunAnnotationK8sNamespaces(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("profiles:\n  mon:\n    cmds: [map_create]\n    maps: [hash]\n    k8s_namespaces: [monitoring]\n  any:\n    cmds: [map_create]\n    maps: [hash]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := func(n *delegate.Names) (*profile.Policy, error) { return profile.LoadPolicy(cfg, n, false) }
	for _, tc := range []struct {
		name       string
		annotation string // io.bpfgate.profile
		flag       string // --profile
		ns         string // the pod's namespace as CRI-O's annotations say
		refused    bool
	}{
		{"limited, by annotation", "mon", "", "default", true},
		// The annotation route is refused for such profiles altogether.
		{"limited, by annotation, pod of the allowed namespace", "mon", "", "monitoring", true},
		{"limited, by --profile", "", "mon", "default", false},
		{"limited, by --profile, annotation too", "any", "mon", "default", false},
		{"not limited, by annotation", "any", "", "default", false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			bundle := t.TempDir()
			// No user namespace: a container that gets past the profile
			// checks is refused by Check, before any mount.
			spec := specs.Spec{Linux: &specs.Linux{}, Process: &specs.Process{}}
			data, _ := json.Marshal(&spec)
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			ann := map[string]string{"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.pod.namespace": tc.ns}
			if tc.annotation != "" {
				ann[ProfileAnnotation] = tc.annotation
			}
			annJSON, _ := json.Marshal(ann)
			state := fmt.Sprintf(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":%d,"bundle":%q,"annotations":%s}`, os.Getpid(), bundle, annJSON)
			_, err := Run(strings.NewReader(state), Options{Profile: tc.flag, Policy: policy, Names: delegate.BuiltinNames()})
			if tc.refused {
				if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "k8s_namespaces") {
					t.Fatalf("got %v, want %v naming k8s_namespaces", err, ErrNotAllowed)
				}
				return
			}
			if !errors.Is(err, ErrNoUserNS) {
				t.Fatalf("got %v, want the profile accepted and the container refused for %v", err, ErrNoUserNS)
			}
		})
	}
}

// TestPrecreateK8sNamespaces: podman's precreate hook, which also goes by
// the annotation, grants no capability for such a profile either.
func TestPrecreateK8sNamespaces(t *testing.T) {
	opts := precreateOpts(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("profiles:\n  mon:\n    cmds: [map_create]\n    maps: [hash]\n    k8s_namespaces: [monitoring]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.Policy = func(n *delegate.Names) (*profile.Policy, error) { return profile.LoadPolicy(cfg, n, false) }
	_, res, err := Precreate(strings.NewReader(config("mon", true, true)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Refused, ErrNotAllowed) || len(res.Caps) != 0 {
		t.Fatalf("refused %v, caps %v; want %v and none", res.Refused, res.Caps, ErrNotAllowed)
	}
}
