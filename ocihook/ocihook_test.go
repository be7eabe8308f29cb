package ocihook

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/launch"
)

func TestReadState(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/b"}`, ""},
		{``, "read the OCI state from stdin"},
		{`{"id":"abc","bundle":"/b"}`, "has no pid: run the hook at the createRuntime stage"},
		{`{"id":"abc","pid":42}`, "has no bundle"},
	} {
		st, err := ReadState(strings.NewReader(tc.in))
		if tc.want == "" {
			if err != nil || st.Pid != 42 {
				t.Errorf("%q: %v %+v", tc.in, err, st)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestProfileName(t *testing.T) {
	st := &specs.State{Annotations: map[string]string{ProfileAnnotation: "net"}}
	if n, _ := ProfileName(st, "demo"); n != "demo" {
		t.Errorf("the hook's own profile must win: %q", n)
	}
	if n, _ := ProfileName(st, ""); n != "net" {
		t.Errorf("annotation: %q", n)
	}
	if _, err := ProfileName(&specs.State{}, ""); !errors.Is(err, ErrNoProfile) {
		t.Errorf("no profile: %v", err)
	}
}

func TestCheck(t *testing.T) {
	userns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.UserNamespace}}
	caps := func(c ...string) *specs.Process {
		return &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: c}}
	}
	need := []delegate.Cap{unix.CAP_BPF, unix.CAP_NET_ADMIN}
	enosys, eperm := uint(unix.ENOSYS), uint(unix.EPERM)
	for _, tc := range []struct {
		name string
		spec specs.Spec
		want error
		msg  string
	}{
		{"ok", specs.Spec{Linux: &specs.Linux{Namespaces: userns}, Process: caps("CAP_NET_ADMIN", "CAP_BPF")}, nil, ""},
		{"no linux section", specs.Spec{Process: caps("CAP_BPF")}, ErrNoUserNS, ""},
		{"no user namespace", specs.Spec{Linux: &specs.Linux{Namespaces: userns[:1]}, Process: caps("CAP_BPF")}, ErrNoUserNS, ""},
		{"missing caps", specs.Spec{Linux: &specs.Linux{Namespaces: userns}, Process: caps("CAP_CHOWN")}, ErrMissingCaps,
			"CAP_BPF, CAP_NET_ADMIN (podman run --cap-add bpf --cap-add net_admin)"},
		{"no process", specs.Spec{Linux: &specs.Linux{Namespaces: userns}}, ErrMissingCaps, ""},
		// Debian 12's default profile, as podman renders it for a container
		// without CAP_SYS_ADMIN.
		{"seccomp fails bpf", specs.Spec{Linux: &specs.Linux{Namespaces: userns, Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno, DefaultErrnoRet: &enosys, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActAllow},
				{Names: []string{"bpf", "setns"}, Action: specs.ActErrno, ErrnoRet: &eperm}}}},
			Process: caps("CAP_NET_ADMIN", "CAP_BPF")}, ErrSeccomp,
			"bpf(2) would fail with EPERM (operation not permitted)): run the container with bpfgate's seccomp profile: write it with `bpfgate oci-hook seccomp` (/etc/bpfgate/seccomp.json) and pass `--security-opt seccomp=/etc/bpfgate/seccomp.json` to podman run"},
		{"seccomp without a rule for bpf", specs.Spec{Linux: &specs.Linux{Namespaces: userns, Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno, DefaultErrnoRet: &enosys}},
			Process: caps("CAP_NET_ADMIN", "CAP_BPF")}, ErrSeccomp, "fail with ENOSYS"},
		{"seccomp allows bpf", specs.Spec{Linux: &specs.Linux{Namespaces: userns, Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"bpf"}, Action: specs.ActAllow}}}},
			Process: caps("CAP_NET_ADMIN", "CAP_BPF")}, nil, ""},
		{"missing caps come first", specs.Spec{Linux: &specs.Linux{Namespaces: userns, Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno}}, Process: caps("CAP_BPF")}, ErrMissingCaps, ""},
	} {
		// As podman writes them: the fixes are podman's.
		tc.spec.Annotations = map[string]string{"io.container.manager": "libpod"}
		err := Check(&Request{Spec: &tc.spec, Caps: need})
		if !errors.Is(err, tc.want) || tc.want == nil && err != nil {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v does not say %q", tc.name, err, tc.msg)
		}
	}
}

func TestRootfsPathAndHostID(t *testing.T) {
	st := &specs.State{Bundle: "/run/b"}
	for _, tc := range []struct{ root, want string }{
		{"rootfs", "/run/b/rootfs"},
		{"/var/lib/c/merged", "/var/lib/c/merged"},
		{"/var/lib/c/../c/merged/", "/var/lib/c/merged"},
	} {
		got, err := RootfsPath(st, &specs.Spec{Root: &specs.Root{Path: tc.root}})
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v", tc.root, got, err)
		}
	}
	for _, bad := range []*specs.Spec{{}, {Root: &specs.Root{Path: "/"}}, {Root: &specs.Root{Path: "../../.."}}} {
		if _, err := RootfsPath(st, bad); !errors.Is(err, ErrRootfs) {
			t.Errorf("%+v: %v", bad.Root, err)
		}
	}
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 5000, HostID: 300000, Size: 10}}
	for _, tc := range []struct {
		in, want uint32
		ok       bool
	}{{0, 100000, true}, {999, 100999, true}, {1000, 0, false}, {5009, 300009, true}, {5010, 0, false}} {
		got, ok := HostID(maps, tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("HostID(%d) = %d %v", tc.in, got, ok)
		}
	}
}

// TestOpenRootfsAndTarget resolves profile paths in an image as the
// container will see them: symlinks in the image never lead to the host.
func TestOpenRootfsAndTarget(t *testing.T) {
	host := t.TempDir() // a host directory an image points at
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	for _, d := range []string{"sys/fs/bpf", "run/bpf", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"abs":    host, // absolute, to a host directory
		"up":     "../../../" + filepath.Base(host),
		"inside": "/run/bpf", // absolute, inside the image
		"root":   "/",
		"dotdot": "../../../..",
		"magic":  "/proc/self/root",
	} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rootfs, filepath.Join(base, "linked")); err != nil {
		t.Fatal(err)
	}

	p, err := launch.OpenProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := OpenRootfs(p, filepath.Join(base, "linked")); !errors.Is(err, ErrRootfs) || !strings.Contains(err.Error(), "contains a symlink") {
		t.Errorf("symlinked rootfs: %v", err)
	}
	if _, err := OpenRootfs(p, filepath.Join(base, "missing")); !errors.Is(err, ErrRootfs) {
		t.Errorf("missing rootfs: %v", err)
	}
	root, err := OpenRootfs(p, rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, tc := range []struct {
		path string
		want error
		at   string // where it must resolve to
	}{
		{"/sys/fs/bpf", nil, "sys/fs/bpf"},
		{"/inside", nil, "run/bpf"},
		{"/abs", ErrNoTarget, ""},
		{"/up", ErrNoTarget, ""},
		{"/missing", ErrNoTarget, ""},
		{"/etc/file", ErrNoTarget, ""},
		{"/root", ErrRootTarget, ""},
		{"/dotdot", ErrRootTarget, ""},
		{"/magic", ErrNoTarget, ""}, // no /proc in this image
	} {
		dir, err := OpenTarget(root, tc.path)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.path, err, tc.want)
		}
		if err != nil {
			continue
		}
		want, err := os.Open(filepath.Join(rootfs, tc.at))
		if err != nil {
			t.Fatal(err)
		}
		if same, err := sameFile(dir, want); !same || err != nil {
			t.Errorf("%s resolved elsewhere than %s: %v", tc.path, tc.at, err)
		}
		want.Close()
		dir.Close()
	}

	// The walk up refuses a directory that is not below the rootfs.
	outside, err := os.Open(host)
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	if err := below(outside, root); !errors.Is(err, ErrOutsideRootfs) {
		t.Errorf("host directory: %v", err)
	}
}

func TestSeccompAllowBPF(t *testing.T) {
	base := `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
	  {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
	  {"names":["bpf","setns"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
	  {"names":["bpf","setns"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"excludes":{"caps":["CAP_SYS_ADMIN"]}}]}`
	out, err := SeccompAllowBPF([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	var prof struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names    []string `json:"names"`
			Action   string   `json:"action"`
			ErrnoRet *int     `json:"errnoRet"`
			Includes struct{ Caps []string }
			Excludes struct{ Caps []string }
		}
	}
	if err := json.Unmarshal(out, &prof); err != nil {
		t.Fatal(err)
	}
	if prof.DefaultAction != "SCMP_ACT_ERRNO" || len(prof.Syscalls) != 5 {
		t.Fatalf("profile: %s", out)
	}
	// What a container with the given caps gets for bpf, as containers/common
	// filters rules: every included cap present, no excluded cap present.
	bpfAction := func(caps ...string) []string {
		var got []string
		for _, r := range prof.Syscalls {
			if !strings.Contains(strings.Join(r.Names, ","), "bpf") {
				continue
			}
			ok := true
			for _, c := range r.Includes.Caps {
				ok = ok && strings.Contains(strings.Join(caps, ","), c)
			}
			for _, c := range r.Excludes.Caps {
				ok = ok && !strings.Contains(strings.Join(caps, ","), c)
			}
			if ok {
				got = append(got, r.Action)
			}
		}
		return got
	}
	for _, tc := range []struct {
		caps []string
		want string
	}{
		{nil, "SCMP_ACT_ERRNO"},
		{[]string{"CAP_BPF"}, "SCMP_ACT_ALLOW"},
		{[]string{"CAP_SYS_ADMIN"}, "SCMP_ACT_ALLOW"},
		{[]string{"CAP_BPF", "CAP_SYS_ADMIN"}, "SCMP_ACT_ALLOW"},
	} {
		if got := bpfAction(tc.caps...); len(got) != 1 || got[0] != tc.want {
			t.Errorf("caps %v: bpf gets %v, want exactly %s", tc.caps, got, tc.want)
		}
	}
	// setns stays denied without CAP_SYS_ADMIN.
	if !strings.Contains(string(out), `"setns"`) {
		t.Error("setns rule lost")
	}
	for _, bad := range []string{`[]`, `{"syscalls":3}`, `not json`} {
		if _, err := SeccompAllowBPF([]byte(bad)); !errors.Is(err, ErrSeccompFormat) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestSeccompAllowBPFLetsBPFThrough: the real default profile of
// containers-common, rewritten by SeccompAllowBPF and rendered for a
// container as podman does (rules whose includes/excludes caps rule them
// out dropped), lets bpf(2) through with CAP_BPF, where the original
// fails it; CheckSeccomp tells the two apart.
func TestSeccompAllowBPFLetsBPFThrough(t *testing.T) {
	base, err := ReadSeccompBase(DefaultSeccompBase)
	if err != nil {
		testutil.Skip(t, "no containers-common seccomp profile here (scripts/deps.sh installs podman): "+err.Error())
	}
	rewritten, err := SeccompAllowBPF(base)
	if err != nil {
		t.Fatal(err)
	}
	render := func(data []byte, caps ...string) *specs.Spec {
		var p struct {
			DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
			DefaultErrnoRet *uint                    `json:"defaultErrnoRet"`
			Syscalls        []struct {
				specs.LinuxSyscall
				Includes struct{ Caps []string } `json:"includes"`
				Excludes struct{ Caps []string } `json:"excludes"`
			} `json:"syscalls"`
		}
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatal(err)
		}
		sc := &specs.LinuxSeccomp{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet}
	rules:
		for _, r := range p.Syscalls {
			for _, c := range r.Includes.Caps {
				if !slices.Contains(caps, c) {
					continue rules
				}
			}
			for _, c := range r.Excludes.Caps {
				if slices.Contains(caps, c) {
					continue rules
				}
			}
			sc.Syscalls = append(sc.Syscalls, r.LinuxSyscall)
		}
		return &specs.Spec{Linux: &specs.Linux{Seccomp: sc}}
	}
	if err := CheckSeccomp(render(base, "CAP_BPF")); !errors.Is(err, ErrSeccomp) {
		t.Errorf("default profile with CAP_BPF: %v, want ErrSeccomp", err)
	}
	if err := CheckSeccomp(render(rewritten, "CAP_BPF")); err != nil {
		t.Errorf("bpfgate's profile with CAP_BPF: %v", err)
	}
	if err := CheckSeccomp(render(rewritten)); !errors.Is(err, ErrSeccomp) {
		t.Errorf("bpfgate's profile without CAP_BPF: %v, want ErrSeccomp", err)
	}
}

// TestCheckCaller: each refusal names the fix in the terms of whoever made
// the container.
func TestCheckCaller(t *testing.T) {
	podman := map[string]string{"io.container.manager": "libpod", "io.kubernetes.cri-o.TTY": "false"}
	containerd := map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "abc"}
	crio := map[string]string{"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.pod.name": "p"}
	userns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.UserNamespace}}
	need := []delegate.Cap{unix.CAP_BPF, unix.CAP_PERFMON}
	noUserNS := func(a map[string]string) specs.Spec {
		return specs.Spec{Annotations: a, Linux: &specs.Linux{}, Process: &specs.Process{}}
	}
	noCaps := func(a map[string]string) specs.Spec {
		return specs.Spec{Annotations: a, Linux: &specs.Linux{Namespaces: userns},
			Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_PERFMON"}}}}
	}
	blocked := func(a map[string]string) specs.Spec {
		return specs.Spec{Annotations: a, Linux: &specs.Linux{Namespaces: userns, Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}},
			Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_PERFMON", "CAP_BPF"}}}}
	}
	for _, tc := range []struct {
		name   string
		spec   specs.Spec
		caller Caller
		want   error
		msg    string
	}{
		{"podman userns", noUserNS(podman), Podman, ErrNoUserNS, "podman run --userns=auto"},
		{"podman caps", noCaps(podman), Podman, ErrMissingCaps, "CAP_BPF (podman run --cap-add bpf)"},
		{"podman seccomp", blocked(podman), Podman, ErrSeccomp, "--security-opt seccomp=/etc/bpfgate/seccomp.json"},
		{"containerd userns", noUserNS(containerd), Kubernetes, ErrNoUserNS, "set hostUsers: false in the pod spec"},
		{"containerd caps", noCaps(containerd), Kubernetes, ErrMissingCaps, "CAP_BPF (in the container spec, securityContext.capabilities.add: [BPF])"},
		{"containerd seccomp", blocked(containerd), Kubernetes, ErrSeccomp, "securityContext.seccompProfile.type: RuntimeDefault"},
		{"cri-o userns", noUserNS(crio), Kubernetes, ErrNoUserNS, "hostUsers: false"},
		{"cri-o caps", noCaps(crio), Kubernetes, ErrMissingCaps, "capabilities.add: [BPF]"},
		{"runc userns", noUserNS(nil), Runc, ErrNoUserNS, "add a namespace of type user to linux.namespaces, and linux.uidMappings and linux.gidMappings"},
		{"runc caps", noCaps(nil), Runc, ErrMissingCaps, "CAP_BPF (in config.json, add CAP_BPF to process.capabilities.bounding, .effective and .permitted)"},
		{"runc seccomp", blocked(nil), Runc, ErrSeccomp, "put a rule with names [bpf] and action SCMP_ACT_ALLOW first in linux.seccomp.syscalls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CallerOf(tc.spec.Annotations); got != tc.caller {
				t.Errorf("caller %v, want %v", got, tc.caller)
			}
			err := Check(&Request{Spec: &tc.spec, Caps: need})
			if !errors.Is(err, tc.want) || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %v saying %q", err, tc.want, tc.msg)
			}
			// No other caller's fix leaks in.
			foreign := map[Caller][]string{Podman: {"hostUsers", "securityContext", "config.json"},
				Kubernetes: {"podman", "config.json"}, Runc: {"podman", "hostUsers", "securityContext"}}
			for _, w := range foreign[tc.caller] {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%v also says %q", err, w)
				}
			}
		})
	}
}
