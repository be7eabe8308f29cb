package record

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bpfgate/bpfgate/delegate"
)

// Delegation returns what the calls made with a token used: the commands
// map_create, prog_load and btf_load (the ones that take a token), the map
// types, the program types and their expected attach types. A value a
// delegation cannot name (64 or more) is left out; NotJudged says so.
func (r *Record) Delegation() delegate.Set {
	var s delegate.Set
	bit := func(v uint32) uint64 {
		if v >= 64 {
			return 0
		}
		return 1 << v
	}
	for c := range r.Calls {
		if !c.Token {
			continue
		}
		switch c.Cmd {
		case cmdMapCreate:
			s.Cmds |= bit(c.Cmd)
			s.Maps |= bit(c.Type)
		case cmdProgLoad:
			s.Cmds |= bit(c.Cmd)
			s.Progs |= bit(c.Type)
			s.Attachs |= bit(c.Attach)
		case cmdBTFLoad:
			s.Cmds |= bit(c.Cmd)
		}
	}
	return s
}

// UsedToken reports whether the workload created a token or passed one.
func (r *Record) UsedToken() bool {
	for c := range r.Calls {
		if c.Token || c.Cmd == cmdTokenCreate {
			return true
		}
	}
	return false
}

// Describe names a call with the kernel's names, e.g. "prog_load
// socket_filter (expected attach type cgroup_inet_ingress) with a token".
func Describe(n *delegate.Names, c Call) string {
	var b strings.Builder
	b.WriteString(name(n, delegate.Cmds, c.Cmd))
	if c.HasType {
		k := delegate.Maps
		if c.Cmd == cmdProgLoad {
			k = delegate.Progs
		}
		b.WriteString(" " + name(n, k, c.Type))
	}
	if c.HasAttach {
		if c.Cmd == cmdProgLoad {
			b.WriteString(" (expected attach type " + name(n, delegate.Attachs, c.Attach) + ")")
		} else {
			b.WriteString(" " + name(n, delegate.Attachs, c.Attach))
		}
	}
	if takesToken(c.Cmd) {
		if c.Token {
			b.WriteString(" with a token")
		} else {
			b.WriteString(" without a token")
		}
	}
	return b.String()
}

// name is the kernel's name of value v, or a description that cannot be
// mistaken for a mask (a bare decimal would be read as one).
func name(n *delegate.Names, k delegate.Kind, v uint32) string {
	if s := n.ShortName(k, v); s != "" {
		return s
	}
	return fmt.Sprintf("unknown %s value %#x", k, v)
}

func takesToken(cmd uint32) bool {
	return cmd == cmdMapCreate || cmd == cmdProgLoad || cmd == cmdBTFLoad
}

// NotJudged says, sorted, what the record cannot turn into a delegation:
// object loads without a token (they need CAP_BPF and more in the initial
// user namespace, which no token gives), values no delegation can name,
// and calls that could not be read or were not kept.
func (r *Record) NotJudged(n *delegate.Names) []string {
	var out []string
	for _, c := range r.Sorted() {
		switch {
		case takesToken(c.Cmd) && !c.Token:
			out = append(out, Describe(n, c)+": needs privilege a token cannot give (the kernel checks CAP_BPF and more in the initial user namespace)")
		case c.Token && (c.HasType && c.Type >= 64 || c.Cmd == cmdProgLoad && c.Attach >= 64):
			out = append(out, Describe(n, c)+": a value no delegation can name")
		}
	}
	if r.Unreadable > 0 {
		out = append(out, fmt.Sprintf("%d call(s) whose bpf_attr could not be read (a bad pointer: the kernel fails them too)", r.Unreadable))
	}
	if r.Gone > 0 {
		out = append(out, fmt.Sprintf("%d call(s) whose task died or gave up before they were read", r.Gone))
	}
	if r.Overflow > 0 {
		out = append(out, fmt.Sprintf("%d call(s) beyond %d distinct ones were counted, not kept", r.Overflow, MaxDistinct))
	}
	if r.Foreign > 0 {
		out = append(out, fmt.Sprintf("%d notification(s) for other system calls or architectures", r.Foreign))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Attachments says, sorted, which token-free commands the workload used:
// link creation, program attachment, raw tracepoints. The kernel checks
// them against the program and the workload's capabilities, not against
// the delegation.
func (r *Record) Attachments(n *delegate.Names) []string {
	var out []string
	for _, c := range r.Sorted() {
		if c.Cmd == cmdLinkCreate || c.Cmd == cmdProgAttach || c.Cmd == cmdRawTracepointOpen {
			out = append(out, Describe(n, c))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
