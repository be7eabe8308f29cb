package doctor

import (
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/ocihook"
)

func set(t *testing.T, cmds, maps, progs, attachs string) *delegate.Set {
	t.Helper()
	s, err := delegate.BuiltinNames().SetFlags(cmds, maps, progs, attachs)
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestCheckSocketFilter(t *testing.T) {
	names := delegate.BuiltinNames()
	for _, tc := range []struct {
		name   string
		d      *delegate.Set
		status Status
		fix    string
	}{
		{"no bpffs", nil, OK, ""},
		{"no prog_load", set(t, "map_create", "hash", "", ""), OK, ""},
		{"both", set(t, "prog_load", "", "socket_filter,xdp", "cgroup_inet_ingress,xdp"), OK, ""},
		{"socket_filter without its attach type", set(t, "prog_load", "", "socket_filter", "xdp"), Fail, "--attachs cgroup_inet_ingress"},
		{"neither", set(t, "prog_load", "", "xdp", "xdp"), Warn, "--progs socket_filter --attachs cgroup_inet_ingress"},
	} {
		f := checkSocketFilter(names, tc.d)
		if f.Status != tc.status || !strings.Contains(f.Fix, tc.fix) {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
}

func TestCheckPerf(t *testing.T) {
	names := delegate.BuiltinNames()
	for _, tc := range []struct {
		name   string
		d      *delegate.Set
		status Status
		seen   string
	}{
		{"nothing", nil, OK, "nothing perf-event based delegated"},
		{"raw_tp and ringbuf", set(t, "prog_load", "ringbuf", "raw_tracepoint,tracing", ""), OK, ""},
		{"kprobe", set(t, "prog_load", "", "kprobe", ""), Warn, "delegated kprobe, but no token allows perf_event_open"},
		{"perf buffer", set(t, "map_create", "perf_event_array", "", ""), Warn, "delegated perf_event_array"},
	} {
		f := checkPerf(names, tc.d)
		if f.Status != tc.status || !strings.Contains(f.Seen, tc.seen) {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
}

func TestProfileGap(t *testing.T) {
	names := delegate.BuiltinNames()
	for _, tc := range []struct {
		name          string
		granted, used *delegate.Set
		status        Status
		seen, fix     string
	}{
		{"nothing missing", set(t, "map_create,prog_load", "hash", "xdp", "xdp"), set(t, "map_create", "hash", "", ""), OK, "everything used was delegated", ""},
		{"a map type", set(t, "map_create", "hash", "", ""), set(t, "map_create", "hash,lru_hash", "", ""), Fail,
			"used but not delegated: maps lru_hash", "--maps lru_hash; in the profile (config.yaml), add to its lists: maps: [lru_hash]"},
		{"the socket filter probe", set(t, "prog_load", "", "xdp", "xdp"), set(t, "prog_load", "", "socket_filter", "cgroup_inet_ingress"), Fail,
			"progs socket_filter; attachs cgroup_inet_ingress", "--progs socket_filter --attachs cgroup_inet_ingress"},
		{"a capability", set(t, "prog_load", "", "socket_filter", ""), set(t, "prog_load", "", "xdp", ""), Fail,
			"capabilities CAP_NET_ADMIN", "caps: [CAP_NET_ADMIN]"},
		{"a bit without a name", set(t, "map_create", "", "", ""), &delegate.Set{Maps: 1 << 62}, Fail,
			"maps 0x4000000000000000", "--maps 0x4000000000000000"},
	} {
		f := ProfileGap(names, *tc.granted, *tc.used)
		if f.Status != tc.status || !strings.Contains(f.Seen, tc.seen) || !strings.Contains(f.Fix, tc.fix) {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
}

func TestCommandFinding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		stderr string
		status Status
		seen   string
		fix    string
	}{
		{"success", 0, "", OK, "exited 0", ""},
		{"libbpf without its probe", 1, "libbpf: map 'x.rodata': failed\nError: fd 7 is not pointing to valid bpf_map\n", Fail,
			"its stderr ended with: libbpf: map 'x.rodata': failed | Error: fd 7 is not pointing to valid bpf_map", CheckSocketFilter},
		{"EPERM", 2, "load: operation not permitted", Fail, "exited 2", "bpfgate profile -- CMD"},
		{"killed", 137, "", Fail, "killed by SIGKILL", ""},
		{"not found", 127, "", Fail, "exited 127", "could not be executed"},
		{"control characters", 1, "\x1b[31mred\x1b[0m", Fail, "?[31mred?[0m", ""},
	} {
		tl := &tail{n: 4096}
		tl.Write([]byte(tc.stderr))
		f := commandFinding([]string{"tool"}, tc.code, nil, tl)
		if f.Status != tc.status || !strings.Contains(f.Seen, tc.seen) || !strings.Contains(f.Fix, tc.fix) {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
	tl := &tail{n: 8}
	tl.Write([]byte("0123456789"))
	tl.Write([]byte("ab"))
	if got := tl.lines(5); got != "456789ab" {
		t.Errorf("tail: %q", got)
	}
}

func TestCheckCaps(t *testing.T) {
	names := delegate.BuiltinNames()
	const bpf, perfmon = 1 << 39, 1 << 38
	for _, tc := range []struct {
		name     string
		eff, bnd uint64
		deleg    *delegate.Set
		spec     bool
		status   Status
		fix      string
	}{
		{"CAP_BPF", bpf, bpf, nil, false, OK, ""},
		{"not in the bounding set, container", 0, 0, nil, true, Fail, "podman run --cap-add bpf"},
		{"not in the bounding set, process", 0, 0, nil, false, Fail, "bpfgate run"},
		{"not effective", 0, bpf, nil, false, Fail, "root of its user namespace"},
		{"xdp needs CAP_NET_ADMIN", bpf, bpf, set(t, "prog_load", "", "xdp", "xdp"), true, Fail, "podman run --cap-add net_admin"},
		{"tracing needs CAP_PERFMON", bpf | perfmon, bpf | perfmon, set(t, "prog_load", "", "raw_tracepoint", ""), false, OK, ""},
	} {
		pr := &proc{status: map[string]string{"CapEff": fmt.Sprintf("%016x", tc.eff), "CapBnd": fmt.Sprintf("%016x", tc.bnd)}}
		if tc.deleg != nil {
			pr.bpffs = &bpffs.Info{Delegation: *tc.deleg}
		}
		o := &Options{}
		if tc.spec {
			o.Spec = &specs.Spec{Annotations: podmanAnnotations}
		}
		f := pr.checkCaps(names, o)
		if f.Status != tc.status || !strings.Contains(f.Fix, tc.fix) {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
}

// Annotations of a container as each caller makes it.
var (
	podmanAnnotations = map[string]string{"io.container.manager": "libpod"}
	k8sAnnotations    = map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.pod.name": "p"}
)

// TestContainerFixes: a container's fixes are in the words of what made
// it, the OCI hook's (ocihook.Caller), not podman flags for every one.
func TestContainerFixes(t *testing.T) {
	names := delegate.BuiltinNames()
	blocking := &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}}}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		caller      ocihook.Caller
		// Words each fix must hold: user namespace, capabilities
		// (CAP_BPF and CAP_NET_ADMIN missing), seccomp, bpffs.
		userns, caps, seccomp, bpffs string
	}{
		{"kubernetes", k8sAnnotations, ocihook.Kubernetes,
			"hostUsers: false", "securityContext.capabilities.add: [BPF, NET_ADMIN]", "securityContext.seccompProfile", "bpfgate.dev/bpf-PROFILE"},
		{"podman", podmanAnnotations, ocihook.Podman,
			"podman run --userns=auto", "podman run --cap-add bpf --cap-add net_admin", "--security-opt seccomp=", "podman run --device bpfgate.dev/bpf=PROFILE"},
		{"runc", nil, ocihook.Runc,
			"linux.uidMappings", "add CAP_BPF, CAP_NET_ADMIN to process.capabilities.bounding", "linux.seccomp.syscalls", "hooks.createRuntime"},
		// podman kube play: podman's, though it looks like a pod.
		{"podman kube play", map[string]string{"io.container.manager": "libpod", "io.kubernetes.pod.name": "p"}, ocihook.Podman,
			"podman run --userns=auto", "--cap-add net_admin", "--security-opt seccomp=", "podman run --device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := *blocking
			spec.Annotations = tc.annotations
			o := &Options{Spec: &spec}
			pr := &proc{hostNS: true, status: map[string]string{"CapEff": "0", "CapBnd": "0"},
				bpffs: &bpffs.Info{Delegation: *set(t, "prog_load", "", "xdp", "xdp")}}
			for _, c := range []struct {
				f        Finding
				want, eq string
			}{
				{pr.checkUserNS(o), tc.userns, tc.caller.UserNSFix()},
				{pr.checkCaps(names, o), tc.caps, tc.caller.CapsFix([]string{"CAP_BPF", "CAP_NET_ADMIN"})},
				{checkSeccompConfig(o), tc.seccomp, tc.caller.SeccompFix()},
				{(&proc{}).checkBPFFS(names, o), tc.bpffs, ""},
			} {
				if c.f.Status != Fail || !strings.Contains(c.f.Fix, c.want) {
					t.Errorf("%s: %s, fix %q, want a failure whose fix says %q", c.f.Check, c.f.Status, c.f.Fix, c.want)
				}
				if c.eq != "" && c.f.Fix != c.eq {
					t.Errorf("%s: fix %q, want the OCI hook's %q", c.f.Check, c.f.Fix, c.eq)
				}
			}
			if got := o.seccompFix(); got != tc.caller.SeccompFix() {
				t.Errorf("seccomp fix %q, want %q", got, tc.caller.SeccompFix())
			}
		})
	}
}
