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

// TestRunAudit: Options.Audit runs only for a container that passed Check,
// refuses the container when it fails, and is aborted when the mount
// fails after it.
func TestRunAudit(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("profiles:\n  p:\n    cmds: [map_create]\n    maps: [hash]\n    audit: /var/log/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := func(n *delegate.Names) (*profile.Policy, error) { return profile.LoadPolicy(cfg, n, false) }
	userns := []specs.LinuxNamespace{{Type: specs.UserNamespace}}
	for _, tc := range []struct {
		name      string
		ns        []specs.LinuxNamespace
		auditErr  error
		want      string
		called    bool
		abortWant bool
	}{
		{"refused before", nil, nil, "no user namespace", false, false},
		{"audit fails", userns, errors.New("recorder broken"), "recorder broken", true, false},
		{"mount fails", userns, nil, "root.path", true, true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			bundle := t.TempDir()
			// No root.path: the mount fails once Check has passed.
			spec := specs.Spec{Linux: &specs.Linux{Namespaces: tc.ns},
				Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_BPF"}}}}
			data, _ := json.Marshal(&spec)
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			state := fmt.Sprintf(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":%d,"bundle":%q}`, os.Getpid(), bundle)
			var called, aborted bool
			_, err := Run(strings.NewReader(state), Options{Profile: "p", Policy: policy, Names: delegate.BuiltinNames(),
				Audit: func(st *specs.State, p profile.Profile) (string, func(), error) {
					called = true
					if st.ID != "c1" || p.Audit != "/var/log/x" {
						t.Errorf("audit of %+v, %+v", st, p)
					}
					return "/var/log/x/c1.jsonl", func() { aborted = true }, tc.auditErr
				}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if called != tc.called || aborted != tc.abortWant {
				t.Errorf("audit called %v (want %v), aborted %v (want %v)", called, tc.called, aborted, tc.abortWant)
			}
		})
	}
}
