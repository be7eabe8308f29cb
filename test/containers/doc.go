// Package containers holds the end-to-end tests of bpfgate with real
// container runtimes: podman (CDI devices and hooks.d) running runc. They
// build bpfgate and a static cilium/ebpf workload, import a busybox image,
// and need root, podman, runc and busybox-static (scripts/deps.sh).
//
// They run in a mount namespace of their own, with podman's storage,
// state, CDI specs and hooks in a temporary directory, and check that
// the host's podman store and CDI directories are as they found them.
package containers
