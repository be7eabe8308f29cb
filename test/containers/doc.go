// Package containers holds the end-to-end tests of bpfgate with real
// container runtimes: podman (CDI devices and hooks.d) running runc. They
// build bpfgate and a static cilium/ebpf workload, import a busybox image,
// and need root, podman, runc and busybox-static (see .ci/run).
package containers
