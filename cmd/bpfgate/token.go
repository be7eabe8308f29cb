package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

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
			var views []tokenShowJSON
			for _, m := range mounts {
				if len(args) > 0 && !slices.Contains(args, m.Path) {
					continue
				}
				if len(args) == 0 && m.Delegation.IsZero() {
					continue
				}
				views = append(views, showMount(names, m))
			}
			for _, a := range args {
				if !hasView(views, a) {
					return fmt.Errorf("%s: not a bpffs mount point", a)
				}
			}
			if g.jsonOut() {
				if views == nil {
					views = []tokenShowJSON{}
				}
				return g.printJSON(views)
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
				show := v.allowedJSON
				if v.Token != nil {
					show = v.Token.allowedJSON
					fmt.Printf("  token: yes (info from %s)\n", v.Token.Source)
				} else {
					fmt.Printf("  token: no: %s\n", v.TokenError)
				}
				for _, k := range delegate.Kinds {
					fmt.Printf("  allowed_%-8s %s\n", k.String()+":", strings.Join(show.list(k), " "))
				}
			}
			return nil
		},
	}
}

// showMount describes one bpffs mount, and the token made from it if one
// can be.
func showMount(names *delegate.Names, m bpffs.Info) tokenShowJSON {
	v := tokenShowJSON{Path: m.Path, allowedJSON: allowedOf(names, m.Delegation),
		Options: names.FormatOptions(m.Delegation), UID: m.UID, GID: m.GID, Mode: octalMode(m.Mode)}
	// The kernel leaves the sticky bit out of the mode option it shows; the
	// root's inode has the real mode.
	var st unix.Stat_t
	if err := unix.Stat(m.Path, &st); err == nil {
		v.Mode = octalMode(st.Mode)
	}
	t, err := token.Create(m.Path)
	if err != nil {
		v.TokenError = err.Error()
		return v
	}
	info, err := t.Info()
	t.Close()
	if err != nil {
		v.TokenError = err.Error()
		return v
	}
	v.Token = &tokenInfoJSON{Source: info.Source, allowedJSON: allowedOf(names, info.Allowed),
		Options: names.FormatOptions(info.Allowed)}
	return v
}

func hasView(vs []tokenShowJSON, path string) bool {
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
			if g.jsonOut() {
				return g.printJSON(rep)
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
	fmt.Printf("%d ok, %d denied, %d unsupported, %d need a target in %.1f ms\n",
		counts[token.Works], counts[token.Denied], counts[token.Unsupported], counts[token.NotProbed],
		float64(rep.Duration.Microseconds())/1000)
}
