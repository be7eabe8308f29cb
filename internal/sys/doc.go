// Package sys holds the raw system calls bpfgate makes that neither
// golang.org/x/sys/unix nor github.com/cilium/ebpf expose: BPF_TOKEN_CREATE,
// BPF commands that must carry an explicit token fd, passing file
// descriptors over unix sockets, and reading a tracee's seccomp filters.
//
// Everything here is a thin, allocation-free wrapper around the kernel ABI.
// Policy and error messages for people live in the public packages.
package sys
