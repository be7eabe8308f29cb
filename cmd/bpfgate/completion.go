package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/pins"
)

// Shell completion for arguments that name kernel objects or pinned trees.
// Flags complete where they are registered (delegation_flags.go).

// pinKinds are the first argument of bpfgate pin.
var pinKinds = []string{"map\ta map by id", "prog\ta program by id", "link\ta link by id"}

// completePin completes bpfgate pin map|prog|link ID PATH: the kind, then
// the ids of the loaded objects of that kind with their type and name, then
// a path.
func completePin(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return pinKinds, cobra.ShellCompDirectiveNoFileComp
	case 1:
		ids, err := objectIDs(args[0], prefix)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	case 2:
		return nil, cobra.ShellCompDirectiveDefault
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// objectIDs lists "ID\tTYPE NAME" for every loaded object of kind whose id
// starts with prefix, with the kernel's type names as bpftool prints them.
// Objects that go away while listed are skipped.
func objectIDs(kind, prefix string) ([]string, error) {
	names, _ := delegate.KernelNames() // without them, cilium/ebpf's names
	typeName := func(k delegate.Kind, v uint32, fallback fmt.Stringer) string {
		if names != nil {
			if n := names.ShortName(k, v); n != "" {
				return n
			}
		}
		return fallback.String()
	}
	var out []string
	add := func(id uint32, desc string) {
		if s := strconv.FormatUint(uint64(id), 10); strings.HasPrefix(s, prefix) {
			out = append(out, s+"\t"+desc)
		}
	}
	switch kind {
	case "map":
		for id, err := ebpf.MapGetNextID(0); err == nil; id, err = ebpf.MapGetNextID(id) {
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				continue
			}
			if info, err := m.Info(); err == nil {
				add(uint32(id), typeName(delegate.Maps, uint32(info.Type), info.Type)+" "+info.Name)
			}
			m.Close()
		}
	case "prog", "program":
		for id, err := ebpf.ProgramGetNextID(0); err == nil; id, err = ebpf.ProgramGetNextID(id) {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			if info, err := p.Info(); err == nil {
				add(uint32(id), typeName(delegate.Progs, uint32(info.Type), info.Type)+" "+info.Name)
			}
			p.Close()
		}
	case "link":
		it := new(link.Iterator)
		defer it.Close()
		for it.Next() {
			if info, err := it.Link.Info(); err == nil {
				add(uint32(info.ID), fmt.Sprintf("%s prog %d", pins.LinkTypeName(info.Type), info.Program))
			}
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	return out, nil
}

// completePreloadNames completes bpfgate preload remove NAME: the objects
// pinned below the root (the --root flag, which cobra parses before it
// asks), not those already given.
func completePreloadNames(root *string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		d, err := pins.OpenDir(*root, pins.OpenOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		defer d.Close()
		names, err := d.ReadDir(".")
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []string
		for _, n := range names {
			// Objects are directories whose names have no dot (@staging is
			// where apply builds trees; maps.debug and progs.debug are the
			// kernel's, where the root is a mount's root).
			if strings.ContainsAny(n, ".@") || !strings.HasPrefix(n, prefix) || slices.Contains(args, n) {
				continue
			}
			if mode, err := d.Lstat(n); err == nil && mode.IsDir() {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
