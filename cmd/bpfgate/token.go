package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/token"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Inspect and probe BPF tokens",
	}
	cmd.AddCommand(newTokenShowCmd(g), newTokenProbeCmd(g))
	return cmd
}

// tokenView is one bpffs and what a token from it allows.
type tokenView struct {
	Path       string    `json:"path"`
	Delegation namedSet  `json:"delegation"`
	Token      *namedSet `json:"token,omitempty"`
	Source     string    `json:"token_info_source,omitempty"`
	TokenError string    `json:"token_error,omitempty"`
	UID        uint32    `json:"uid"`
	GID        uint32    `json:"gid"`
	Mode       string    `json:"mode"`
}

// namedSet is a Set with its names decoded.
type namedSet struct {
	Options string              `json:"options"`
	Masks   delegate.Set        `json:"masks"`
	Names   map[string][]string `json:"names"`
}

func nameSet(names *delegate.Names, s delegate.Set) namedSet {
	ns := namedSet{Options: names.FormatOptions(s), Masks: s, Names: map[string][]string{}}
	for _, k := range delegate.Kinds {
		list, unnamed := names.Split(k, s.Mask(k))
		if unnamed != 0 {
			list = append(list, fmt.Sprintf("0x%x", unnamed))
		}
		if list == nil {
			list = []string{}
		}
		ns.Names[k.String()] = list
	}
	return ns
}

func newTokenShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [PATH...]",
		Short: "Show what each delegated bpffs (and a token from it) allows",
		Long: `Show the delegation of each BPF filesystem (all bpffs mounts by default),
decoded to names. Where a token can be created (inside the owning user
namespace) it is created and its own view is shown as well.`,
		Example: `  bpfgate token show
  bpfgate run --profile demo -- bpfgate token show --json /sys/fs/bpf`,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			mounts, err := bpffs.Mounts(names)
			if err != nil {
				return err
			}
			mounts = bpffs.Visible(mounts, bpffs.MountPath)
			var views []tokenView
			for _, m := range mounts {
				if len(args) > 0 && !slices.Contains(args, m.Path) {
					continue
				}
				if len(args) == 0 && m.Delegation.IsZero() {
					continue
				}
				v := tokenView{Path: m.Path, Delegation: nameSet(names, m.Delegation),
					UID: m.UID, GID: m.GID, Mode: fmt.Sprintf("%04o", m.Mode)}
				t, err := token.Create(m.Path)
				if err != nil {
					v.TokenError = err.Error()
				} else {
					info, err := t.Info()
					t.Close()
					if err != nil {
						v.TokenError = err.Error()
					} else {
						ns := nameSet(names, info.Allowed)
						v.Token, v.Source = &ns, info.Source
					}
				}
				views = append(views, v)
			}
			for _, a := range args {
				if !hasView(views, a) {
					return fmt.Errorf("%s: not a bpffs mount point", a)
				}
			}
			if g.json {
				if views == nil {
					views = []tokenView{}
				}
				return printJSON(views)
			}
			if len(views) == 0 {
				fmt.Println("no delegated bpffs mounts")
				return nil
			}
			for i, v := range views {
				if i > 0 {
					fmt.Println()
				}
				fmt.Printf("%s (uid %d, gid %d, mode %s)\n", v.Path, v.UID, v.GID, v.Mode)
				show := v.Delegation
				if v.Token != nil {
					show = *v.Token
					fmt.Printf("  token: yes (info from %s)\n", v.Source)
				} else {
					fmt.Printf("  token: no: %s\n", v.TokenError)
				}
				for _, k := range delegate.Kinds {
					fmt.Printf("  allowed_%-8s %s\n", k.String()+":", strings.Join(show.Names[k.String()], " "))
				}
			}
			return nil
		},
	}
}

func hasView(vs []tokenView, path string) bool {
	for _, v := range vs {
		if v.Path == path {
			return true
		}
	}
	return false
}

func newTokenProbeCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "probe [PATH]",
		Short: "Try every map and program type with a token and show what works",
		Long: `Create a token (from PATH, else with libbpf's rules: LIBBPF_BPF_TOKEN_PATH,
else /sys/fs/bpf) and try to create a minimal map of every map type and load
a minimal program of every program type with it.`,
		Example: `  bpfgate run --profile demo -- bpfgate token probe`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			t, found, err := token.Find(path)
			if err != nil {
				return err
			}
			if t == nil && found.Err != nil {
				fmt.Fprintf(os.Stderr, "bpfgate: no token from %s: %v; probing without a token\n", found.Path, found.Err)
			}
			defer t.Close()
			rep := token.Probe(t, names)
			if g.json {
				return printJSON(rep)
			}
			printProbe(rep, all)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list denied and unsupported types too")
	return cmd
}

func printProbe(rep token.Report, all bool) {
	if rep.Token {
		fmt.Printf("token from %s\n", rep.Path)
	} else {
		fmt.Println("no token")
	}
	fmt.Printf("btf_load: %s\n", rep.BTF)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tTYPE\tRESULT\tDETAIL")
	counts := map[token.Outcome]int{}
	for _, r := range append(append([]token.Result{}, rep.Maps...), rep.Progs...) {
		counts[r.Outcome]++
		if !all && r.Outcome != token.Works {
			continue
		}
		detail := r.Error
		if r.Attach != "" && r.Outcome == token.Works {
			detail = "expected_attach_type " + r.Attach
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Kind, r.Type, r.Outcome, detail)
	}
	tw.Flush()
	fmt.Printf("%d ok, %d denied, %d unsupported, %d skipped in %.1f ms\n",
		counts[token.Works], counts[token.Denied], counts[token.Unsupported], counts[token.NotProbed],
		float64(rep.Duration.Microseconds())/1000)
}
