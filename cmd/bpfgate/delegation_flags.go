package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/profile"
)

// delegationFlags are the flags every command that builds a Set shares.
type delegationFlags struct {
	profile                    string
	cmds, maps, progs, attachs string
}

func (f *delegationFlags) register(cmd *cobra.Command, withProfile bool) {
	fl := cmd.Flags()
	if withProfile {
		fl.StringVar(&f.profile, "profile", "", "start from a named profile (see 'bpfgate profiles')")
	}
	fl.StringVar(&f.cmds, "cmds", "", "BPF commands to delegate, e.g. map_create:prog_load:btf_load")
	fl.StringVar(&f.maps, "maps", "", "map types to delegate, e.g. hash,array")
	fl.StringVar(&f.progs, "progs", "", "program types to delegate, e.g. socket_filter")
	fl.StringVar(&f.attachs, "attachs", "", "attach types to delegate, e.g. cgroup_inet_ingress")
	_ = cmd.RegisterFlagCompletionFunc("profile", completeProfiles)
	for _, k := range delegate.Kinds {
		k := k
		_ = cmd.RegisterFlagCompletionFunc(k.String(), func(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
			return completeNames(k, prefix)
		})
	}
}

// resolved is a Set and where it came from.
type resolved struct {
	set     delegate.Set
	profile *profile.Profile
}

// load reads the running kernel's names and resolves the flags with them.
func (f *delegationFlags) load(g *globals) (*delegate.Names, resolved, error) {
	names, err := delegate.KernelNames()
	if err != nil {
		return nil, resolved{}, err
	}
	r, err := f.resolve(g, names)
	return names, r, err
}

// resolve builds the Set: the profile's, with each given flag added.
func (f *delegationFlags) resolve(g *globals, names *delegate.Names) (resolved, error) {
	var r resolved
	if f.profile != "" {
		pol, err := g.policy(names)
		if err != nil {
			return r, err
		}
		p, err := pol.Find(f.profile)
		if err != nil {
			return r, err
		}
		set, skipped, err := p.Resolve(names)
		if err != nil {
			return r, err
		}
		if len(skipped) > 0 {
			fmt.Fprintf(os.Stderr, "bpfgate: profile %s: this kernel lacks %s (skipped)\n", p.Name, strings.Join(skipped, ", "))
		}
		r.set, r.profile = set, &p
	}
	extra, err := names.SetFlags(f.cmds, f.maps, f.progs, f.attachs)
	if err != nil {
		return r, fmt.Errorf("%w (see 'bpfgate names')", err)
	}
	for _, k := range delegate.Kinds {
		v := [...]string{f.cmds, f.maps, f.progs, f.attachs}[k]
		for _, w := range delegate.LintOption(k, v) {
			fmt.Fprintln(os.Stderr, "bpfgate: warning:", w.Message)
		}
	}
	r.set = r.set.Union(extra)
	return r, nil
}

func completeNames(k delegate.Kind, prefix string) ([]string, cobra.ShellCompDirective) {
	names, err := delegate.KernelNames()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	// Complete the last element of a list.
	head := ""
	if i := strings.LastIndexAny(prefix, ":,"); i >= 0 {
		head = prefix[:i+1]
	}
	var out []string
	for _, n := range append(names.List(k), "any") {
		out = append(out, head+n)
	}
	return out, cobra.ShellCompDirectiveNoSpace
}

func completeProfiles(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, p := range profile.Builtins() {
		out = append(out, p.Name+"\t"+p.Description)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
