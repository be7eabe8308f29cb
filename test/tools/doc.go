// Package tools holds the end-to-end tests of bpfgate's built-in profiles
// with real eBPF tools nobody here wrote: Debian trixie's libbpf-tools
// (bcc's CO-RE tools on libbpf 1.5), bpftool 7.5, bpftrace and xdp-tools,
// from the cached root scripts/tools-rootfs.sh builds, and objects of the
// cilium/ebpf module (from the Go module proxy). Each runs unprivileged in
// `bpfgate run --profile P` through the root's own dynamic loader.
//
// For each profile a tool that must work does (attached, with events or
// counts in its output), a tool that needs what the profile lacks fails
// with EPERM, and what no token can ever reach fails as docs/profiles.md
// says. They need root and the tools root (scripts/deps.sh builds it).
// The same tools in podman containers are tested in test/containers.
package tools
