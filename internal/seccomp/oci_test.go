package seccomp

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func uptr(v uint) *uint { return &v }

func TestEvalOCI(t *testing.T) {
	allowBPF := specs.LinuxSyscall{Names: []string{"bpf"}, Action: specs.ActAllow}
	for _, tc := range []struct {
		name    string
		s       *specs.LinuxSeccomp
		allowed bool
		want    string
	}{
		{"no seccomp section", nil, true, "allow (no seccomp filter)"},
		{"default errno, no rule", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(38)},
			false, "fail with ENOSYS (function not implemented) (defaultAction SCMP_ACT_ERRNO; no rule names bpf)"},
		{"default errno without errnoRet is EPERM", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
			false, "fail with EPERM (operation not permitted) (defaultAction SCMP_ACT_ERRNO; no rule names bpf)"},
		{"allowed by a rule", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{allowBPF}},
			true, "allow"},
		{"denied by a rule", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf", "perf_event_open"}, Action: specs.ActErrno, ErrnoRet: uptr(1)}}},
			false, "fail with EPERM (operation not permitted)"},
		{"the first of two rules", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf"}, Action: specs.ActKillProcess}, allowBPF}},
			false, "kill the process"},
		{"a rule that does what the default does is left out", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(38), Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf"}, Action: specs.ActErrno, ErrnoRet: uptr(38)}, allowBPF}},
			true, "allow"},
		{"the first of two rules, allowing", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			allowBPF, {Names: []string{"bpf"}, Action: specs.ActErrno}}},
			true, "allow"},
		{"logged", &specs.LinuxSeccomp{DefaultAction: specs.ActLog}, true, "allow, and log (defaultAction SCMP_ACT_LOG; no rule names bpf)"},
		{"notify", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"bpf"}, Action: specs.ActNotify}}},
			false, "ask a supervisor (user notification; ENOSYS without one)"},
		{"only token_create allowed", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 36, Op: specs.OpEqualTo}}}}},
			false, "fail with EPERM (operation not permitted): map_create, map_lookup_elem, map_update_elem, map_delete_elem, map_get_next_key, prog_load, obj_pin, obj_get, prog_attach, prog_detach, prog_test_run, obj_get_info_by_fd, prog_query, raw_tracepoint_open, btf_load, map_lookup_and_delete_elem, map_freeze, link_create, link_update, iter_create, link_detach, prog_bind_map; allow: token_create"},
		{"two conditions on one argument are either-or", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 5, Op: specs.OpLessEqual}, {Index: 0, Value: 36, Op: specs.OpEqualTo}}}}},
			false, "allow: map_create, map_lookup_elem, map_update_elem, map_delete_elem, map_get_next_key, prog_load, token_create; fail with EPERM (operation not permitted): obj_pin, obj_get, prog_attach, prog_detach, prog_test_run, obj_get_info_by_fd, prog_query, raw_tracepoint_open, btf_load, map_lookup_and_delete_elem, map_freeze, link_create, link_update, iter_create, link_detach, prog_bind_map"},
		{"a condition on the size is not trusted to allow", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 200, Op: specs.OpLessThan}}}}},
			false, "fail with EPERM (operation not permitted) (every command)"},
		{"masked", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"bpf"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x20, ValueTwo: 0x20, Op: specs.OpMaskedEqual}}}}},
			false, "allow: map_create, map_lookup_elem, map_update_elem, map_delete_elem, map_get_next_key, prog_load, obj_pin, obj_get, prog_attach, prog_detach, prog_test_run, obj_get_info_by_fd, prog_query, raw_tracepoint_open, btf_load, map_lookup_and_delete_elem, map_freeze, link_create, link_update; SIGSYS (trap): iter_create, link_detach, prog_bind_map, token_create"}, // 0x20 is set in 33 to 36
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := EvalOCI(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if r.Allowed() != tc.allowed || r.String() != tc.want {
				t.Errorf("got %v %q\nwant %v %q", r.Allowed(), r.String(), tc.allowed, tc.want)
			}
		})
	}
	if _, err := EvalOCI(&specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}); err == nil {
		t.Error("an unknown default action: no error")
	}
}

// containersProfile is the containers/common seccomp JSON format, as far
// as the conversion to the OCI section needs it.
type containersProfile struct {
	DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet *uint                    `json:"defaultErrnoRet"`
	Syscalls        []struct {
		Names    []string                 `json:"names"`
		Action   specs.LinuxSeccompAction `json:"action"`
		ErrnoRet *uint                    `json:"errnoRet"`
		Args     []specs.LinuxSeccompArg  `json:"args"`
		Includes struct {
			Caps []string `json:"caps"`
		} `json:"includes"`
		Excludes struct {
			Caps []string `json:"caps"`
		} `json:"excludes"`
	} `json:"syscalls"`
}

// toOCI renders a containers profile for a container with caps as podman
// does: rules whose includes or excludes the capabilities rule out are
// dropped.
func toOCI(t *testing.T, data []byte, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	var p containersProfile
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	out := &specs.LinuxSeccomp{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet}
	for _, r := range p.Syscalls {
		if slices.ContainsFunc(r.Includes.Caps, func(c string) bool { return !slices.Contains(caps, c) }) {
			continue
		}
		if slices.ContainsFunc(r.Excludes.Caps, func(c string) bool { return slices.Contains(caps, c) }) {
			continue
		}
		out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{Names: r.Names, Action: r.Action, ErrnoRet: r.ErrnoRet, Args: r.Args})
	}
	return out
}

// TestEvalOCIContainersProfile: the real default profile of containers-common
// (Debian 12's, before 0.57) blocks bpf(2) without CAP_SYS_ADMIN, and the
// profile `bpfgate oci-hook seccomp` writes from it lets CAP_BPF through.
func TestEvalOCIContainersProfile(t *testing.T) {
	base, err := os.ReadFile("/usr/share/containers/seccomp.json")
	if err != nil {
		testutil.Skip(t, "no containers-common seccomp profile here (scripts/deps.sh installs podman): "+err.Error())
	}
	if !strings.Contains(string(base), `"CAP_SYS_ADMIN"`) {
		testutil.Skip(t, "an unexpected containers-common seccomp profile (no CAP_SYS_ADMIN condition)")
	}
	caps := []string{"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"}
	for _, tc := range []struct {
		name    string
		caps    []string
		allowed bool
	}{
		{"default caps", caps, false},
		{"CAP_BPF", append(caps, "CAP_BPF"), strings.Contains(string(base), `"CAP_BPF"`)},
		{"CAP_SYS_ADMIN", append(caps, "CAP_SYS_ADMIN"), true},
	} {
		r, err := EvalOCI(toOCI(t, base, tc.caps))
		if err != nil {
			t.Fatal(err)
		}
		if r.Allowed() != tc.allowed {
			t.Errorf("%s: allowed %v, want %v: %s", tc.name, r.Allowed(), tc.allowed, r)
		}
		if !tc.allowed && r.String() != "fail with EPERM (operation not permitted)" {
			t.Errorf("%s: %s", tc.name, r)
		}
	}
}
