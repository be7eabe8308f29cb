package nri

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"

	"github.com/bpfgate/bpfgate/cdi"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

const hookPath = "/usr/local/bin/bpfgate"

func testPlugin(t testing.TB) *Plugin {
	t.Helper()
	p, err := New(Options{
		Hook:  cdi.Hook{Path: hookPath, Args: []string{"--config", "/etc/bpfgate/test.yaml"}},
		Names: &delegate.Names{},
		Policy: func(*delegate.Names) (*profile.Policy, error) {
			return &profile.Policy{Profiles: []profile.Profile{{Name: "demo", Cmds: "map_create"},
				{Name: "scoped", Cmds: "map_create", K8sNamespaces: []string{"ns", "other"}},
				{Name: "elsewhere", Cmds: "map_create", K8sNamespaces: []string{"monitoring"}}}, Path: "test"}, nil
		},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Retry:    10 * time.Millisecond,
		MaxRetry: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	userNS = []*api.LinuxNamespace{{Type: "pid"}, {Type: "user"}, {Type: "mount"}}
	hostNS = []*api.LinuxNamespace{{Type: "pid"}, {Type: "mount"}}
	criAnn = map[string]string{"io.kubernetes.cri.container-type": "container"}
)

func ctr(name string, ns []*api.LinuxNamespace, sc *api.LinuxSeccomp) *api.Container {
	return &api.Container{Name: name, Annotations: criAnn,
		Linux: &api.LinuxContainer{Namespaces: ns, SeccompPolicy: sc}}
}

// withHook is a container with a createRuntime hook at path.
func withHook(path string) *api.Container {
	c := ctr("c", userNS, nil)
	c.Hooks = &api.Hooks{CreateRuntime: []*api.Hook{{Path: path, Args: []string{"bpfgate", "oci-hook", "--profile", "demo"}}}}
	return c
}

func pod(annots map[string]string) *api.PodSandbox {
	return &api.PodSandbox{Name: "p", Namespace: "ns", Annotations: annots}
}

func errnoRule(errno uint32, names ...string) *api.LinuxSyscall {
	r := &api.LinuxSyscall{Names: names, Action: "SCMP_ACT_ERRNO"}
	if errno != 0 {
		r.ErrnoRet = &api.OptionalUInt32{Value: errno}
	}
	return r
}

func TestCreateContainer(t *testing.T) {
	p := testPlugin(t)
	demo := map[string]string{ProfileAnnotation: "demo"}
	denyBPF := &api.LinuxSeccomp{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []*api.LinuxSyscall{errnoRule(1, "bpf", "kexec_load")}}
	denyAll := &api.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []*api.LinuxSyscall{{Names: []string{"read"}, Action: "SCMP_ACT_ALLOW"}}}
	enosys := &api.LinuxSeccomp{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []*api.LinuxSyscall{errnoRule(1, "bpf"), errnoRule(38, "clone3")}}
	for _, tc := range []struct {
		name    string
		pod     *api.PodSandbox
		ctr     *api.Container
		hook    bool   // the hook is added
		seccomp string // names of the adjusted policy's rules, "" for no adjustment
		err     error
		text    string // the refusal's text after the wrapped error
		profile string // the hook's, if not demo
	}{
		{name: "unannotated", pod: pod(nil), ctr: ctr("c", hostNS, nil)},
		{name: "other container", pod: pod(map[string]string{ContainerAnnotationPrefix + "x": "demo"}), ctr: ctr("c", userNS, nil)},
		{name: "pod annotation", pod: pod(demo), ctr: ctr("c", userNS, nil), hook: true},
		{name: "container annotation", pod: pod(map[string]string{ContainerAnnotationPrefix + "c": "demo"}), ctr: ctr("c", userNS, nil), hook: true},
		{name: "container annotation wins", pod: pod(map[string]string{ProfileAnnotation: "gone", ContainerAnnotationPrefix + "c": "demo"}), ctr: ctr("c", userNS, nil), hook: true},
		{name: "container opts out", pod: pod(map[string]string{ProfileAnnotation: "demo", ContainerAnnotationPrefix + "c": ""}), ctr: ctr("c", hostNS, nil)},
		{name: "no user namespace", pod: pod(demo), ctr: ctr("c", hostNS, nil), err: ocihook.ErrNoUserNS,
			text: ocihook.ErrNoUserNS.Error() + ": " + ocihook.Kubernetes.UserNSFix()},
		{name: "no user namespace, no CRI annotations", pod: pod(demo), ctr: &api.Container{Name: "c", Linux: &api.LinuxContainer{Namespaces: hostNS}},
			err: ocihook.ErrNoUserNS, text: ocihook.Kubernetes.UserNSFix()},
		{name: "not allowed", pod: pod(map[string]string{ProfileAnnotation: "gone"}), ctr: ctr("c", userNS, nil), err: ocihook.ErrNotAllowed,
			text: fmt.Sprintf("%s: %s %q", ocihook.ErrNotAllowed, profile.ErrUnknown, "gone")},
		{name: "namespace allowed", pod: pod(map[string]string{ProfileAnnotation: "scoped"}), ctr: ctr("c", userNS, nil), hook: true, profile: "scoped"},
		{name: "namespace not allowed", pod: pod(map[string]string{ProfileAnnotation: "elsewhere"}), ctr: ctr("c", userNS, nil), err: ocihook.ErrNotAllowed,
			text: "profile elsewhere is for pods of the namespaces monitoring only (k8s_namespaces in test), not ns"},
		{name: "seccomp denies bpf", pod: pod(demo), ctr: ctr("c", userNS, denyBPF), hook: true, seccomp: "[bpf] [kexec_load]"},
		{name: "seccomp denies by default", pod: pod(demo), ctr: ctr("c", userNS, denyAll), hook: true, seccomp: "[bpf] [read]"},
		// containerd 2.2 would crash on the ENOSYS rule: left to the hook.
		{name: "seccomp with errnoRet ENOSYS", pod: pod(demo), ctr: ctr("c", userNS, enosys), hook: true},
		{name: "hook there already", pod: pod(demo), ctr: withHook(hookPath)},
		{name: "CDI device's hook there already", pod: pod(demo), ctr: withHook("/usr/bin/bpfgate")},
		{name: "another hook", pod: pod(demo), ctr: withHook("/usr/bin/other"), hook: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adj, upd, err := p.CreateContainer(context.Background(), tc.pod, tc.ctr)
			if len(upd) > 0 {
				t.Errorf("updates to other containers: %v", upd)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.text) {
					t.Fatalf("err = %v, want %v saying %q", err, tc.err, tc.text)
				}
				if adj != nil {
					t.Errorf("adjustment with a refusal: %v", adj)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var hooks []string
			for _, h := range adj.GetHooks().GetCreateRuntime() {
				if h.GetTimeout().GetValue() != cdi.HookTimeout {
					t.Errorf("hook timeout %v, want %d", h.GetTimeout(), cdi.HookTimeout)
				}
				hooks = append(hooks, h.Path+" "+strings.Join(h.Args, " "))
			}
			want := []string(nil)
			if tc.hook {
				prof := cmp.Or(tc.profile, "demo")
				want = []string{hookPath + " bpfgate oci-hook --profile " + prof + " --config /etc/bpfgate/test.yaml"}
			}
			if !slices.Equal(hooks, want) {
				t.Errorf("hooks %q, want %q", hooks, want)
			}
			var rules []string
			sc := adj.GetLinux().GetSeccompPolicy()
			for _, r := range sc.GetSyscalls() {
				rules = append(rules, fmt.Sprint(r.Names))
				if r.ErrnoRet != nil {
					t.Errorf("rule %v keeps errnoRet %d (containerd 2.2 crashes on it)", r.Names, r.ErrnoRet.Value)
				}
			}
			if got := strings.Join(rules, " "); got != tc.seccomp {
				t.Errorf("seccomp rules %q, want %q", got, tc.seccomp)
			}
			if sc != nil {
				if ok, err := AllowsBPF(sc); !ok || err != nil {
					t.Errorf("the adjusted policy still blocks bpf(2) (%v)", err)
				}
			}
		})
	}
}

func TestAllowBPFRefuses(t *testing.T) {
	for _, sc := range []*api.LinuxSeccomp{
		{DefaultAction: "SCMP_ACT_ERRNO", DefaultErrno: &api.OptionalUInt32{Value: 38}},
		{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []*api.LinuxSyscall{errnoRule(38, "clone3")}},
	} {
		if out, err := AllowBPF(sc); !errors.Is(err, ErrSeccompRewrite) {
			t.Errorf("AllowBPF(%v) = %v, %v; want ErrSeccompRewrite", sc, out, err)
		}
	}
}

func TestNewChecks(t *testing.T) {
	for _, opts := range []Options{
		{Hook: cdi.Hook{Path: "bpfgate"}},
		{Hook: cdi.Hook{Path: hookPath}, Index: "5"},
		{Hook: cdi.Hook{Path: hookPath}, Index: "a1"},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v): no error", opts)
		}
	}
}

// runtime is NRI's runtime side (what containerd embeds) on sock.
func runtime(t *testing.T, sock string) *adaptation.Adaptation {
	t.Helper()
	syncFn := func(ctx context.Context, cb adaptation.SyncCB) error {
		_, err := cb(ctx, nil, nil)
		return err
	}
	update := func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil }
	dir := t.TempDir()
	r, err := adaptation.New("test-runtime", "1", syncFn, update, adaptation.WithSocketPath(sock),
		adaptation.WithPluginPath(filepath.Join(dir, "plugins")), adaptation.WithPluginConfigPath(filepath.Join(dir, "conf")))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// waitHook creates an annotated container on r until the plugin answers it
// with the hook.
func waitHook(t *testing.T, r *adaptation.Adaptation) {
	t.Helper()
	req := &api.CreateContainerRequest{Pod: &api.PodSandbox{Id: "p", Name: "p", Annotations: map[string]string{ProfileAnnotation: "demo"}},
		Container: &api.Container{Id: "c", PodSandboxId: "p", Name: "c", Linux: &api.LinuxContainer{Namespaces: userNS}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rpl, err := r.CreateContainer(context.Background(), req)
		if err == nil && len(rpl.GetAdjust().GetHooks().GetCreateRuntime()) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin did not add its hook in 10 s (last: %v, %v)", rpl, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy forwards connections on sock to the runtime's socket, until
// closed: then its connections break as a runtime's do when it exits (NRI's
// runtime side leaves external plugins' connections open when stopped).
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, sock, target string) *proxy {
	t.Helper()
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) close() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestRunReconnects: the plugin registers with the runtime, registers again
// when the runtime restarts, and Run returns nil once its context is done.
func TestRunReconnects(t *testing.T) {
	dir, err := os.MkdirTemp("", "bpfgate-nri-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// Short paths: a socket path has at most 108 bytes.
	sock := filepath.Join(dir, "nri.sock")
	p := testPlugin(t)
	p.opts.Socket = sock

	r := runtime(t, filepath.Join(dir, "r1.sock"))
	px := newProxy(t, sock, filepath.Join(dir, "r1.sock"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitHook(t, r)

	// The runtime goes away; the plugin tries (and fails) meanwhile.
	px.close()
	r.Stop()
	time.Sleep(100 * time.Millisecond)
	r = runtime(t, filepath.Join(dir, "r2.sock"))
	defer r.Stop()
	px = newProxy(t, sock, filepath.Join(dir, "r2.sock"))
	defer px.close()
	waitHook(t, r)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of its context being done")
	}
}
