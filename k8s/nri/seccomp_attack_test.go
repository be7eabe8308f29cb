package nri

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/internal/seccomp"
)

// localhostCtr is a container whose seccomp policy is the Localhost profile
// prof, written to a file, as containerd 2.2 shows it to NRI plugins.
func localhostCtr(t *testing.T, prof string) *api.Container {
	t.Helper()
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, []byte(prof), 0o644); err != nil {
		t.Fatal(err)
	}
	c := ctr("c", userNS, nil)
	c.Linux.SeccompProfile = &api.SecurityProfile{ProfileType: api.SecurityProfile_LOCALHOST, LocalhostRef: path}
	return c
}

// TestLocalhostNotCarried: NRI holds a rule's argument index in 32 bits.
// A Localhost profile runc refuses (an index of 1<<32: the container would
// not start) must not come back from the plugin as a valid policy with
// index 0, which lets ptrace(PTRACE_ATTACH) through.
func TestLocalhostNotCarried(t *testing.T) {
	const prof = `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
{"names":["ptrace"],"action":"SCMP_ACT_ALLOW","args":[{"index":4294967296,"value":16,"op":"SCMP_CMP_EQ"}]}]}`
	var orig specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(prof), &orig); err != nil {
		t.Fatal(err)
	}
	if _, _, err := seccomp.OCIAction(&orig, "ptrace", 16); err == nil {
		t.Fatal("the profile is valid: the test needs one runc refuses")
	}
	adj, _, err := testPlugin(t).CreateContainer(context.Background(), pod(map[string]string{ProfileAnnotation: "demo"}), localhostCtr(t, prof))
	if err != nil {
		t.Fatal(err)
	}
	if sc := adj.GetLinux().GetSeccompPolicy(); sc != nil {
		a, _, err := seccomp.OCIAction(ociSeccomp(sc), "ptrace", 16)
		t.Errorf("the plugin set a seccomp policy from a profile runc refuses: ptrace(PTRACE_ATTACH) %v (%v)", a, err)
	}
	if !hasHook(adj) {
		t.Error("no hook: the hook must still refuse the container if bpf(2) stays blocked")
	}
}

func hasHook(adj *api.ContainerAdjustment) bool {
	return slices.ContainsFunc(adj.GetHooks().GetCreateRuntime(), func(h *api.Hook) bool { return h.Path == hookPath })
}

// FuzzLocalhostSeccomp: a Localhost profile the plugin rewrites comes out
// allowing bpf(2) and doing to every other system call named in it, for
// any first argument the rules compare with, what the profile did, as runc
// builds the filter: never more, never something runc would refuse.
func FuzzLocalhostSeccomp(f *testing.F) {
	for _, seed := range []string{
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","bpf"],"action":"SCMP_ACT_ALLOW"}]}`,
		`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["bpf","kexec_load"],"action":"SCMP_ACT_ERRNO"}]}`,
		`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"args":[{"index":0,"value":5,"op":"SCMP_CMP_EQ"}]}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":4294967297,"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`,
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["ptrace"],"action":"SCMP_ACT_ALLOW","args":[{"index":4294967296,"value":16,"op":"SCMP_CMP_EQ"}]}]}`,
		`{"defaultAction":"SCMP_ACT_KILL","architectures":["SCMP_ARCH_X86_64"],"flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[{"names":["setns"],"action":"SCMP_ACT_LOG"},{"names":["bpf"],"action":"SCMP_ACT_TRAP"}]}`,
		`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["clone"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}`,
		`{}`, `null`, `[]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeLocalhost("fuzz.json", data)
		if err != nil {
			return
		}
		var orig specs.LinuxSeccomp
		if err := json.Unmarshal(data, &orig); err != nil {
			t.Fatalf("decodeLocalhost took what containerd refuses: %s", data)
		}
		if _, err := AllowsBPF(s); err != nil {
			return
		}
		fixed, err := AllowBPF(s)
		if err != nil {
			return
		}
		if ok, err := AllowsBPF(fixed); err != nil || !ok {
			t.Fatalf("bpf(2) still blocked (%v): %s", err, data)
		}
		out := ociSeccomp(fixed)
		if out.DefaultAction != orig.DefaultAction || !slices.Equal(out.Architectures, orig.Architectures) && len(orig.Architectures) > 0 ||
			!slices.Equal(out.Flags, orig.Flags) && len(orig.Flags) > 0 || out.ListenerPath != orig.ListenerPath {
			t.Fatalf("the policy's own fields changed:\n%+v\n%+v", orig, out)
		}
		for _, r := range orig.Syscalls {
			args := []uint64{0, 1}
			for _, a := range r.Args {
				args = append(args, a.Value, a.ValueTwo)
			}
			for _, name := range r.Names {
				if name == "bpf" {
					continue
				}
				for _, arg0 := range args {
					was, _, errWas := seccomp.OCIAction(&orig, name, arg0)
					now, _, errNow := seccomp.OCIAction(out, name, arg0)
					if errWas != nil && errNow == nil {
						t.Fatalf("%s: runc refuses the profile (%v), the rewrite is valid: %s", name, errWas, data)
					}
					if errWas == nil && errNow == nil && was != now {
						t.Fatalf("%s(%#x): %v, was %v: %s", name, arg0, now, was, data)
					}
				}
			}
		}
	})
}

// TestLocalhostDeepJSON: a Localhost profile nested deeper than
// encoding/json goes leaves the policy to the hook.
func TestLocalhostDeepJSON(t *testing.T) {
	prof := `{"defaultAction":"SCMP_ACT_ERRNO","x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`
	adj, _, err := testPlugin(t).CreateContainer(context.Background(), pod(map[string]string{ProfileAnnotation: "demo"}), localhostCtr(t, prof))
	if err != nil || adj.GetLinux().GetSeccompPolicy() != nil || !hasHook(adj) {
		t.Errorf("%v, seccomp %v, hook %v: want the hook and no seccomp change", err, adj.GetLinux().GetSeccompPolicy(), hasHook(adj))
	}
}
