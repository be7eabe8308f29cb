// Package bpffs mounts and lists BPF filesystems, and carries out the
// delegation handshake that mounts a bpffs owned by another user namespace.
//
// A delegated bpffs must be created by a process inside the workload's user
// and mount namespaces (fsopen), configured by a process with CAP_SYS_ADMIN
// in the initial user namespace (the delegate_* options), then attached
// inside the workload's mount namespace. ServeDelegation is the privileged
// half and MountDelegated the workload half; they talk over a SOCK_SEQPACKET
// unix socket and pass the filesystem context fd with SCM_RIGHTS.
package bpffs
