// Package launch runs workloads with delegated BPF rights, and mounts
// delegated BPF filesystems into processes that already run.
//
// Start runs a command in a new user and mount namespace, mapped to
// unprivileged host ids, with a delegated bpffs mounted inside (at
// /sys/fs/bpf by default) and only the capabilities the delegation needs.
// MountInto mounts a delegated bpffs inside an existing process's
// namespaces, such as a container's init.
//
// Both re-execute the calling binary as the workload half of the handshake,
// so every program that uses this package must call Init first thing in
// main (or TestMain):
//
//	func main() {
//		launch.Init()
//		...
//	}
package launch
