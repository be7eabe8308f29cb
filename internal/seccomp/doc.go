// Package seccomp tells whether a seccomp filter lets bpf(2) through, which
// a BPF token cannot help with: a filter that fails bpf(2) does so before
// the kernel looks at the token.
//
// It has three parts. A classic BPF interpreter (Filter) that runs a filter
// over struct seccomp_data as the kernel does, and Combine, which merges the
// actions of stacked filters by the kernel's precedence. ReadFilters, which
// takes a running process's filters with PTRACE_SECCOMP_GET_FILTER (bounded
// in time, never leaving the process stopped or traced). And EvalOCI, which
// reads the seccomp section of a container's config.json (what runc or crun
// turned into the filter) without running anything, for the OCI hook.
//
// Filters are evaluated for x86_64's bpf(2) only.
package seccomp
