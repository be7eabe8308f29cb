// Package audit records the bpf(2) calls of delegated workloads, host-wide:
// every call made with a BPF token, every call refused with EPERM in a user
// namespace other than the host's, and every object made in one. Each Event says who made the call
// (pid, comm, host uid, user namespace, cgroup), what it asked for (the
// command and its map, program and attach types, in the kernel's names), the
// token it passed as the kernel holds it (its user namespace, the device of
// its bpffs, its delegation), what the kernel returned, and why a call was
// refused: what the token's delegation lacks ("map type ringbuf not
// delegated"), "capability missing" when the delegation covers the call, or
// "no token".
//
// A BPF program at the exit of bpf(2) reads the call's attr, resolves the token fd and the fd of the object it created through
// CO-RE reads of the kernel's structures, and writes a record to a ring
// buffer. A full ring buffer drops records, counted by Dropped. Filters (pid,
// user namespace, cgroup) apply in the kernel. The program runs at every
// system call's exit (tp_btf sys_exit) where the kernel takes ia32 or x32
// system calls (ABIs), and records bpf(2) through each ABI (Event.ABI);
// elsewhere on the syscalls:sys_exit_bpf tracepoint, which costs other
// system calls less and does not see those ABIs (Tracer.ABIs).
//
// The tracer needs root and amd64. It sees what the kernel did, but reads
// the attr from the caller's memory after the call: for a call that fails, a
// second thread of the caller could change it in between. The types of an
// object that was made come from the object itself.
//
// See docs/audit.md for the command line (bpfgate audit, bpfgate run
// --audit) and the limits.
package audit
