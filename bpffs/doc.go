// Package bpffs mounts and lists BPF filesystems, and carries out the
// delegation handshake that mounts a bpffs owned by another user namespace.
//
// A delegated bpffs must be created by a process inside the workload's user
// and mount namespaces (fsopen), configured by a process with CAP_SYS_ADMIN
// in the initial user namespace (the delegate_* options), then attached
// inside the workload's mount namespace. ServeDelegationTo is the privileged
// half; the other half is a C helper (package launch/nsexec) inside the
// workload's namespaces. They talk over a SOCK_SEQPACKET unix socket: the
// helper sends the filesystem context fd, the privileged side configures
// and creates it, checks that it really is a BPF filesystem that no host
// namespace owns, and sends back a detached mount for the helper to attach.
package bpffs
