package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/cdi"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

const (
	// ProfileAnnotation is the pod annotation that gives every container
	// of the pod a profile.
	ProfileAnnotation = "bpfgate.dev/profile"
	// ContainerAnnotationPrefix followed by a container's name is the pod
	// annotation that gives that container a profile; it wins over
	// ProfileAnnotation.
	ContainerAnnotationPrefix = ProfileAnnotation + ".container."

	// DefaultSocket is containerd's default NRI socket.
	DefaultSocket = "/var/run/nri/nri.sock"
	// DefaultName and DefaultIndex name the plugin to the runtime; the
	// index orders plugins (lower first).
	DefaultName  = "bpfgate"
	DefaultIndex = "50"
)

// ErrHookPath means the hook's binary is not given as an absolute path.
var ErrHookPath = errors.New("the hook's bpfgate binary must be an absolute path (runtimes do not search PATH)")

// Options configure a Plugin.
type Options struct {
	// Socket is the runtime's NRI socket (DefaultSocket if empty).
	Socket string
	// Name and Index register the plugin (DefaultName, DefaultIndex).
	Name, Index string
	// Hook is how the runtime runs `bpfgate oci-hook` (its Path must be
	// absolute; Args such as --config and --log go after the profile).
	Hook cdi.Hook
	// Policy loads the host policy for each container asked for
	// (profile.LoadPolicy of profile.DefaultConfig, built-ins when it does
	// not exist, if nil). It must read the same policy as the hook.
	Policy func(*delegate.Names) (*profile.Policy, error)
	// Names are the running kernel's (delegate.KernelNames if nil).
	Names *delegate.Names
	// Log gets a line per container the plugin changes or refuses and per
	// connection (slog.Default() if nil).
	Log *slog.Logger
	// Retry is the first wait before connecting again (one second if 0);
	// it doubles up to MaxRetry (30 s if 0).
	Retry, MaxRetry time.Duration
}

// Plugin is the NRI plugin. Make it with New.
type Plugin struct {
	opts Options
}

// New checks opts and fills in the defaults.
func New(opts Options) (*Plugin, error) {
	if !filepath.IsAbs(opts.Hook.Path) {
		return nil, fmt.Errorf("%w: %q", ErrHookPath, opts.Hook.Path)
	}
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Index == "" {
		opts.Index = DefaultIndex
	}
	if len(opts.Index) != 2 || opts.Index[0] < '0' || opts.Index[0] > '9' || opts.Index[1] < '0' || opts.Index[1] > '9' {
		return nil, fmt.Errorf("plugin index %q: want two digits, e.g. %s", opts.Index, DefaultIndex)
	}
	if opts.Policy == nil {
		opts.Policy = func(n *delegate.Names) (*profile.Policy, error) {
			return profile.LoadPolicy(profile.DefaultConfig, n, true)
		}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = 30 * time.Second
	}
	return &Plugin{opts: opts}, nil
}

// ProfileOf is the profile a pod's annotations ask for for a container ("" for
// none).
func ProfileOf(podAnnotations map[string]string, container string) string {
	if name, ok := podAnnotations[ContainerAnnotationPrefix+container]; ok {
		return name
	}
	return podAnnotations[ProfileAnnotation]
}

// CreateContainer adjusts a container that asks for a profile, or refuses
// it (see the package doc). Other containers are left as they are.
func (p *Plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	name := ProfileOf(pod.GetAnnotations(), ctr.GetName())
	if name == "" {
		return nil, nil, nil
	}
	log := p.opts.Log.With("pod", pod.GetNamespace()+"/"+pod.GetName(), "container", ctr.GetName(), "profile", name)
	adj, note, err := p.adjust(pod, ctr, name)
	if err != nil {
		log.Warn("refused", "error", err)
		return nil, nil, fmt.Errorf("bpfgate: pod %s/%s, container %s, profile %s: %w",
			pod.GetNamespace(), pod.GetName(), ctr.GetName(), name, err)
	}
	log.Info("hook added", "seccomp", note)
	return adj, nil, nil
}

func (p *Plugin) adjust(pod *api.PodSandbox, ctr *api.Container, name string) (*api.ContainerAdjustment, string, error) {
	names := p.opts.Names
	if names == nil {
		var err error
		if names, err = delegate.KernelNames(); err != nil {
			return nil, "", err
		}
	}
	policy, err := p.opts.Policy(names)
	if err != nil {
		return nil, "", err
	}
	prof, err := policy.Find(name)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ocihook.ErrNotAllowed, err)
	}
	if ns := pod.GetNamespace(); !prof.AllowsK8sNamespace(ns) {
		return nil, "", fmt.Errorf("%w: profile %s is for pods of the namespaces %s only (k8s_namespaces in %s), not %s",
			ocihook.ErrNotAllowed, name, strings.Join(prof.K8sNamespaces, ", "), policy.Path, ns)
	}
	// The hook's own checks, on what NRI shows: the user namespace (NRI
	// shows no capabilities; the hook checks them at start).
	if err := ocihook.Check(&ocihook.Request{Spec: specOf(pod, ctr)}); err != nil {
		return nil, "", err
	}
	adj := &api.ContainerAdjustment{}
	note, err := allowBPFIn(ctr, adj)
	if err != nil {
		note = "left to the hook: " + err.Error()
	}
	if !p.hasHook(ctr) {
		timeout := int64(cdi.HookTimeout)
		adj.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{
			Path:    p.opts.Hook.Path,
			Args:    p.opts.Hook.HookArgs(name),
			Env:     p.opts.Hook.Env,
			Timeout: &api.OptionalInt{Value: timeout},
		}}})
	}
	return adj, note, nil
}

// allowBPFIn sets a seccomp policy that lets bpf(2) through on adj when
// the container's would block it, and says what it did.
func allowBPFIn(ctr *api.Container, adj *api.ContainerAdjustment) (string, error) {
	sc, known, err := seccompOf(ctr)
	if err != nil {
		return "", err
	}
	if !known {
		return "not shown (RuntimeDefault): left to the hook", nil
	}
	allowed, err := AllowsBPF(sc)
	if err != nil {
		return "", err
	}
	if allowed {
		return "allows bpf(2)", nil
	}
	fixed, err := AllowBPF(sc)
	if err != nil {
		return "", err
	}
	adj.SetLinuxSeccompPolicy(fixed)
	return "bpf(2) allowed", nil
}

// hasHook says whether the container already runs bpfgate's hook (say from
// a CDI device too, whose spec may name another copy of bpfgate): a second
// one would find the bpffs mounted and fail.
func (p *Plugin) hasHook(ctr *api.Container) bool {
	return slices.ContainsFunc(ctr.GetHooks().GetCreateRuntime(), func(h *api.Hook) bool {
		return (h.GetPath() == p.opts.Hook.Path || filepath.Base(h.GetPath()) == "bpfgate") &&
			slices.Contains(h.GetArgs(), "oci-hook")
	})
}

// specOf is as much of the container's OCI config as ocihook.Check reads
// and NRI shows. Its annotations mark it as a Kubernetes container (every
// NRI pod is a CRI pod) so that refusals name the pod spec's fields.
func specOf(pod *api.PodSandbox, ctr *api.Container) *specs.Spec {
	annots := map[string]string{}
	for k, v := range ctr.GetAnnotations() {
		annots[k] = v
	}
	if ocihook.CallerOf(annots) == ocihook.Runc {
		annots["io.kubernetes.pod.name"] = pod.GetName()
	}
	spec := &specs.Spec{Annotations: annots, Linux: &specs.Linux{}}
	for _, ns := range ctr.GetLinux().GetNamespaces() {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces,
			specs.LinuxNamespace{Type: specs.LinuxNamespaceType(ns.GetType()), Path: ns.GetPath()})
	}
	return spec
}

// Run connects to the runtime and serves it until ctx is done, connecting
// again (after Retry, doubling up to MaxRetry) whenever the connection
// fails or the runtime goes away. It returns nil once ctx is done.
func (p *Plugin) Run(ctx context.Context) error {
	wait := p.opts.Retry
	for {
		closed := make(chan struct{})
		var once sync.Once
		s, err := stub.New(p,
			stub.WithPluginName(p.opts.Name), stub.WithPluginIdx(p.opts.Index),
			stub.WithSocketPath(p.opts.Socket),
			stub.WithOnClose(func() { once.Do(func() { close(closed) }) }))
		if err != nil {
			return fmt.Errorf("NRI plugin %s-%s: %w", p.opts.Index, p.opts.Name, err)
		}
		if err := s.Start(ctx); err != nil {
			p.opts.Log.Warn("cannot register with the runtime; trying again", "socket", p.opts.Socket, "in", wait, "error", err)
		} else {
			p.opts.Log.Info("registered with the runtime", "socket", p.opts.Socket, "plugin", p.opts.Index+"-"+p.opts.Name)
			wait = p.opts.Retry
			select {
			case <-ctx.Done():
				s.Stop()
				return nil
			case <-closed:
				p.opts.Log.Warn("the runtime closed the connection; connecting again", "socket", p.opts.Socket, "in", wait)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, p.opts.MaxRetry)
	}
}
