// Package record watches a workload's bpf(2) calls and says what delegation
// they used: the raw material of `bpfgate profile`.
//
// A workload started with launch.Config.RecordBPF has a seccomp filter that
// turns the bpf() commands a delegation bears on (map, program and BTF
// loads, link creation, program attachment, token creation) into user
// notifications; Serve answers them from the listener the workload handed
// over before it executed. For each call it reads the call's bpf_attr from
// the workload's memory (process_vm_readv, never more than the fields it
// decodes), makes sure the call is still waiting (so that the pid was not
// reused and the memory read was the caller's), and lets the call continue
// unchanged: the record never alters what the workload does.
//
// The workload is not trusted. A bogus size, an unmapped pointer, a task
// that dies before its call is answered, or a flood of calls cost bounded
// time and memory, and are counted, not believed. What a workload changes
// in its memory after the read is not seen: a record is a proposal, which
// `bpfgate profile` verifies by running the workload again with exactly
// that delegation.
//
// Record.Delegation gives the delegate.Set of what was used with a token;
// Record.NotJudged lists what no delegation could grant (calls made without
// a token need privilege in the initial user namespace).
package record
