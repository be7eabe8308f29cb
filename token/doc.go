// Package token creates, finds, inspects and probes BPF tokens.
//
// A token is derived from the root of a BPF filesystem that delegates
// something (see package delegate) and is owned by the caller's user
// namespace. It lets a process with CAP_BPF in that user namespace create
// maps, load programs and load BTF of the delegated kinds.
//
// Programs built on cilium/ebpf or libbpf need none of this: they find the
// token themselves. This package is for tools that need to know what a
// token allows, and for loaders that pass the token fd explicitly.
package token
