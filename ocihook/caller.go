package ocihook

import (
	"strings"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/seccomp"
)

// The fixes use no double quotes: runc's log escapes them, and the
// Kubernetes ones are valid YAML without.

// Caller is what made the container's config.json, as far as its
// annotations tell. A refusal names the fix in the caller's own terms: pod
// spec fields for Kubernetes, flags for podman, config.json fields for
// plain runc.
type Caller int

const (
	// Runc is a hand-written bundle run by runc (or crun): anything that is
	// neither podman nor Kubernetes.
	Runc Caller = iota
	// Podman is podman (libpod).
	Podman
	// Kubernetes is a kubelet through a CRI runtime (containerd, CRI-O).
	Kubernetes
)

func (c Caller) String() string {
	switch c {
	case Podman:
		return "podman"
	case Kubernetes:
		return "kubernetes"
	}
	return "runc"
}

// kubernetesAnnotations are set by the CRI runtimes for every container of
// a pod: containerd's (io.kubernetes.cri.*) and CRI-O's. podman also writes
// two io.kubernetes.cri-o.* annotations (Created, TTY), but none of these.
var kubernetesAnnotations = []string{
	"io.kubernetes.cri.container-type",
	"io.kubernetes.cri.sandbox-id",
	"io.kubernetes.cri-o.ContainerType",
	"io.kubernetes.cri-o.SandboxID",
	"io.kubernetes.pod.name",
}

// CallerOf tells the caller from a container's annotations.
func CallerOf(annotations map[string]string) Caller {
	// podman marks every container it makes; it wins over the CRI-like
	// annotations of `podman kube play`.
	if annotations["io.container.manager"] == "libpod" {
		return Podman
	}
	for _, a := range kubernetesAnnotations {
		if _, ok := annotations[a]; ok {
			return Kubernetes
		}
	}
	return Runc
}

// UserNSFix says how the caller gives a container a user namespace of its
// own.
func (c Caller) UserNSFix() string {
	switch c {
	case Podman:
		return "run it with one: podman run --userns=auto:size=65536, or --uidmap/--gidmap with a host id range no other container uses"
	case Kubernetes:
		return "set hostUsers: false in the pod spec (Kubernetes user namespaces; the node's runtime must support them, e.g. containerd 2 or CRI-O 1.34 with runc 1.2 or later)"
	}
	return "give it one in config.json: add a namespace of type user to linux.namespaces, and linux.uidMappings and linux.gidMappings with a host id range no other container uses"
}

// CapsFix says how the caller adds caps to a container.
func (c Caller) CapsFix(caps []string) string {
	var words []string
	switch c {
	case Podman:
		for _, name := range caps {
			words = append(words, "--cap-add "+strings.ToLower(strings.TrimPrefix(name, "CAP_")))
		}
		return "podman run " + strings.Join(words, " ")
	case Kubernetes:
		for _, name := range caps {
			words = append(words, strings.TrimPrefix(name, "CAP_"))
		}
		return "in the container spec, securityContext.capabilities.add: [" + strings.Join(words, ", ") + "]"
	}
	return "in config.json, add " + strings.Join(caps, ", ") + " to process.capabilities.bounding, .effective and .permitted"
}

// SeccompFix says how the caller lets bpf(2) through the container's
// seccomp filter.
func (c Caller) SeccompFix() string {
	switch c {
	case Podman:
		return seccomp.Fix
	case Kubernetes:
		return "give the container a seccomp profile that allows bpf(2) with CAP_BPF: securityContext.seccompProfile.type: RuntimeDefault on containerd (its default profile allows it), or a Localhost profile with a rule that allows bpf"
	}
	return "in config.json, put a rule with names [bpf] and action SCMP_ACT_ALLOW first in linux.seccomp.syscalls"
}

// capNames are the names of caps, as config.json writes them.
func capNames(caps []delegate.Cap) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = c.String()
	}
	return out
}
