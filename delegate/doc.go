// Package delegate parses, validates and prints BPF token delegation sets:
// the four masks a BPF filesystem carries in its delegate_cmds,
// delegate_maps, delegate_progs and delegate_attachs mount options.
//
// Names and numbers come from the running kernel's BTF (enum bpf_cmd,
// bpf_map_type, bpf_prog_type and bpf_attach_type), cached per boot so that
// a command line tool pays for decoding vmlinux BTF once, with a built-in
// table for kernels that have no BTF. Printing follows the kernel's
// bpf_show_options() to the byte, so a Set formats exactly as
// /proc/self/mountinfo shows it.
//
// Parsing accepts everything the kernel accepts (any, decimal, hex and octal
// numbers, names without their prefix in any case, lists joined by ':') and
// also names with their prefix (BPF_PROG_LOAD). Where the kernel's own parser
// is surprising (a number replaces the names listed before it in the same
// option), this package ORs all values, and Lint says so.
package delegate

//go:generate go run ../internal/cmd/gennames builtin_names.go
