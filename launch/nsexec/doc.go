// Package nsexec holds the parts of bpfgate's helpers that must run before
// the Go runtime starts, as runc's nsenter does: a Go process is
// multi-threaded from its first instruction, and a multi-threaded process
// can neither join a user namespace nor fork without exec.
//
// Importing the package (for its side effect) links a C constructor into
// the binary. When bpfgate re-executes itself with the mode variable of
// protocol.h set, the constructor takes over and never returns to Go:
//
//   - "sandbox": the supervisor of `bpfgate run`. It clones the sandbox
//     (new user, mount, PID, IPC, cgroup and, by default, network
//     namespaces, inside the workload's own cgroup), writes its id maps,
//     forwards signals, and removes the cgroup when the sandbox ends or
//     when bpfgate dies. Inside, pid 1 builds the filesystem view, receives
//     the delegated bpffs, forks the workload and reaps.
//   - "enter": MountInto's helper. Non-dumpable before it joins the
//     target's user and mount namespaces through a pidfd, so that the
//     namespace's owner can neither ptrace it nor take its fds.
//
// Builds without cgo have no helpers; Available reports it.
package nsexec
