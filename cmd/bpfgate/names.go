package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/delegate"
)

func newNamesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:       "names [cmds|maps|progs|attachs]",
		Short:     "List the names the running kernel accepts",
		Example:   "  bpfgate names progs",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"cmds", "maps", "progs", "attachs"},
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			kinds := delegate.Kinds[:]
			if len(args) == 1 {
				k, ok := delegate.KindByName(args[0])
				if !ok {
					return fmt.Errorf("unknown kind %q (want cmds, maps, progs or attachs)", args[0])
				}
				kinds = []delegate.Kind{k}
			}
			if g.jsonOut() {
				out := namesJSON{Source: names.Source, Release: names.Release}
				lists := [...]*[]string{&out.Cmds, &out.Maps, &out.Progs, &out.Attachs}
				for _, k := range kinds {
					*lists[k] = names.List(k)
				}
				return g.printJSON(out)
			}
			for _, k := range kinds {
				fmt.Printf("%s (%s):\n  %s\n", k.Option(), k.EnumName(), strings.Join(names.List(k), " "))
			}
			// Where the names come from is a note, not output to parse.
			fmt.Fprintf(os.Stderr, "(names from %s)\n", names.Source)
			return nil
		},
	}
}

func newCheckCmd(g *globals) *cobra.Command {
	var df delegationFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a delegation and print it as the kernel would",
		Long: `Parse a delegation (a profile, flags, or mount options with --options),
print the mount options exactly as the kernel shows them, and warn about
traps: program types without the attach types their loads carry, prog_load
without map_create or btf_load, delegate_cmds=any.`,
		Example: `  bpfgate check --progs socket_filter --cmds prog_load
  bpfgate check --options delegate_cmds=0x3:prog_load`,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			var set delegate.Set
			if opts, _ := cmd.Flags().GetString("options"); opts != "" {
				if set, err = names.ParseOptions(opts); err != nil {
					return err
				}
			}
			r, err := df.resolve(g, names)
			if err != nil {
				return err
			}
			set = set.Union(r.set)
			warnings := names.Lint(set)
			if g.jsonOut() {
				if warnings == nil {
					warnings = []delegate.Warning{}
				}
				return g.printJSON(checkJSON{Options: names.FormatOptions(set), allowedJSON: allowedOf(names, set), Warnings: warnings})
			}
			fmt.Println(names.FormatOptions(set))
			for _, w := range warnings {
				fmt.Println("warning:", w.Message)
			}
			return nil
		},
	}
	df.register(cmd, true)
	cmd.Flags().String("options", "", "mount options to parse, e.g. delegate_cmds=prog_load,delegate_progs=xdp")
	return cmd
}

func newProfilesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "profiles",
		Short: "List the profiles the host allows, and where they come from",
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			pol, err := g.policy(names)
			if err != nil {
				return err
			}
			out := profilesJSON{Config: pol.Path, Builtin: pol.Builtin, Profiles: []profileJSON{}}
			for _, p := range pol.Profiles {
				set, skipped, err := p.Resolve(names)
				if err != nil {
					return err
				}
				out.Profiles = append(out.Profiles, profileOf(names, p, set, skipped))
			}
			if g.jsonOut() {
				return g.printJSON(out)
			}
			fmt.Println(pol.Describe())
			if len(out.Profiles) == 0 {
				fmt.Println("  none: the file allows no profile (built-in profiles apply only when it does not exist)")
			}
			for _, v := range out.Profiles {
				fmt.Printf("%s (%s): %s\n  %s\n", v.Name, v.Source, v.Description, v.Options)
				if len(v.Caps) > 0 {
					fmt.Printf("  caps: CAP_BPF %s\n", strings.Join(v.Caps, " "))
				}
				if v.Audit != "" {
					fmt.Printf("  audit: the OCI hook records its containers in %s\n", v.Audit)
				}
				if len(v.K8sNamespaces) > 0 {
					fmt.Printf("  Kubernetes: pods of the namespaces %s only (NRI, DRA; the device plugin does not offer it)\n", strings.Join(v.K8sNamespaces, ", "))
				}
			}
			return nil
		},
	}
}
