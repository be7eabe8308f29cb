// Package doctor explains why BPF fails for a process: it runs a fixed list
// of checks, in order, and returns a finding for each (the check's name,
// ok, warn or fail, what it saw, and the fix).
//
// The order follows a bpf(2) call's way through the kernel: the kernel and
// its token support (BPF_TOKEN_CREATE probed, not the version guessed), the
// unprivileged_bpf_disabled sysctl, lockdown; then, for a process, the bpffs
// mounts it sees and their delegation, whether the kernel creates a token
// there for its user namespace (asked with the helper bpffs.ServeDelegation
// uses), its capabilities in its user namespace, whether that namespace is
// its own at all, its seccomp filters (read with PTRACE_SECCOMP_GET_FILTER
// and run through a classic BPF interpreter for bpf(2)), and, for a
// container, the seccomp section of its config.json; last the traps of the
// delegation itself: cgroup programs without a cgroup v2 mount, libbpf's
// socket filter probe, perf-event based attachments no token allows.
//
// Everything read under /proc/PID is confirmed against a pidfd afterwards,
// reads are bounded, and the process is never left stopped or traced.
//
// ProfileGap names what a workload used but was not delegated, from a
// recording of its bpf(2) calls, with the flags and profile lines to add.
package doctor
