// Package nri is bpfgate's NRI plugin: it gives containers of annotated
// Kubernetes pods a profile's delegated bpffs through containerd's Node
// Resource Interface (github.com/containerd/nri), with no device plugin,
// DRA driver or CDI spec on the node.
//
// A pod asks for a profile with an annotation:
//
//	bpfgate.dev/profile: demo                  # every container of the pod
//	bpfgate.dev/profile.container.NAME: demo   # container NAME only (wins)
//
// An empty container key leaves that container out (a sidecar in a pod
// whose other containers get the profile).
// Both keys are pod annotations: a Kubernetes pod spec has annotations
// for the pod only (the kubelet writes a container's CRI annotations
// itself), and NRI hands plugins the pod's as the kubelet sent them.
//
// For each container that asks for a profile, CreateContainer
//
//   - refuses it when the host policy (profile.LoadPolicy) does not allow
//     the profile, or when it has no user namespace of its own, with the
//     errors and wording of the OCI hook (ocihook.ErrNotAllowed,
//     ocihook.ErrNoUserNS and the Kubernetes fix), which containerd returns
//     to the kubelet (and crictl) as the container's create error;
//   - adds the createRuntime hook `bpfgate oci-hook --profile NAME`, which
//     mounts the delegated bpffs when the container starts;
//   - when the container's seccomp policy would fail bpf(2), lets bpf(2)
//     through with an allow rule ahead of the others.
//
// The hook rather than the CDI device: the hook needs nothing but the
// bpfgate binary and the policy the plugin itself reads, while a CDI device
// needs `bpfgate cdi generate`'s spec in containerd's CDI directories and
// fails there, not in the plugin, when the spec and the policy disagree.
//
// NRI shows plugins no capabilities and cannot add any: a container
// without CAP_BPF is refused by the hook when it starts, again with the
// Kubernetes wording (securityContext.capabilities.add). containerd before
// 2.3 crashes on a seccomp adjustment whose rules carry an errnoRet other
// than the default EPERM, and drops a policy's defaultErrnoRet: a policy
// the plugin cannot rewrite without changing it (containerd's own
// RuntimeDefault has such rules, but already allows bpf(2) with CAP_BPF) is
// left alone, and the hook refuses the container with the seccomp fix if
// bpf(2) is still blocked.
//
// Plugin.Run connects to the runtime's NRI socket and connects again
// whenever the runtime restarts, until its context is done.
package nri
