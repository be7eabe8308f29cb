// Package ocihook gives a container a delegated BPF filesystem from an OCI
// runtime hook.
//
// The hook runs at the createRuntime stage: on the host, as root, after the
// runtime has made the container's namespaces and mounts but before
// pivot_root. (A createContainer hook would run inside the container's user
// namespace, where the delegate_* options cannot be set.) It reads the OCI
// state from standard input, checks the container against the host's
// policy (the profile must be one the host defines, the container needs a
// user namespace of its own, the capabilities the token needs, and a
// seccomp section in config.json that lets bpf(2) through), and
// mounts the profile's bpffs on the container's rootfs through
// launch.MountIntoDir. The profile comes from the hook's arguments (a CDI
// device) or from the io.bpfgate.profile annotation (an OCI hooks.d entry).
// Refusals name the fix in the terms of the container's caller (CallerOf:
// podman, Kubernetes, plain runc).
//
// Precreate is podman's precreate hook (hooks.d): for a container annotated
// with a profile it adds to the OCI config what podman would otherwise need
// flags for (the profile's capabilities, a bpf(2) seccomp rule, the
// createRuntime hook), editing the JSON so that everything else comes out
// as it went in. It never adds a user namespace.
//
// Before pivot_root the init process's root is still the host's, so the
// profile's path is never resolved from it: the hook opens the rootfs
// (config.json root.path) from that root without following any symlink,
// then resolves the path below the rootfs with RESOLVE_IN_ROOT, as the
// container itself will see it. A symlink in the image cannot send the mount
// to a host directory; a path that does not exist in the image is refused.
package ocihook
