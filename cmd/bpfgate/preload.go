package main

import (
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/preload"
)

func newPreloadCmd(g *globals) *cobra.Command {
	var dir, root string
	cmd := &cobra.Command{
		Use:   "preload",
		Short: "Keep BPF programs loaded and attached from manifests",
		Long: `Load the BPF objects that manifests (*.yaml in --dir) name, attach their
programs and pin everything below --root/NAME/{maps,progs,links}, so they keep
running after bpfgate exits. Apply again at any time: unchanged objects are
left running, changed ones are replaced in one atomic swap.`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", preload.DefaultDir, "directory of manifests")
	cmd.PersistentFlags().StringVar(&root, "root", preload.DefaultRoot, "pin directory on a bpffs")
	read := func() ([]*preload.Manifest, error) { return preload.ReadDir(dir) }

	var prune bool
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Load, attach and pin what the manifests say; leave unchanged objects alone",
		Long: `Load, attach and pin what the manifests say; leave unchanged objects alone.
Each object is applied on its own: one that fails (a missing interface, a
program the kernel refuses) is reported with why, its old version (if any)
keeps running, and the others are applied. The exit status is 1 if any
object failed. A manifest that cannot be read at all stops apply before
anything is loaded.`,
		Example: `  bpfgate preload apply
  bpfgate preload apply --dir examples/preload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := read()
			if err != nil {
				return err
			}
			results, err := preload.Apply(ms, preload.Options{Root: root, Prune: prune})
			if results == nil && err != nil {
				return err // nothing was tried: the root itself failed
			}

			if g.jsonOut() {
				return printResults(g, applyOf(results), err)
			} else {
				for _, r := range results {
					line := fmt.Sprintf("%s: %s", r.Name, r.Action)
					if r.Action != preload.Unchanged && r.Action != preload.Failed {
						line += fmt.Sprintf(" in %s", r.Duration.Round(100*time.Microsecond))
					}
					if len(r.Kept) > 0 {
						line += fmt.Sprintf(", kept maps %v", r.Kept)
					}
					switch {
					case r.Action == preload.Failed:
						line += ": " + r.Why
					case r.Why != "" && (r.Action == preload.Replaced || r.Action == preload.Removed):
						line += " (" + r.Why + ")"
					}
					fmt.Println(line)
				}
			}
			// Each failure is in its result, printed above.
			if failed := countFailed(results); failed > 0 {
				fmt.Fprintf(os.Stderr, "bpfgate: preload apply: %d of %d objects failed; the others are applied\n", failed, len(results))
				return exitError{code: 1}
			}
			return err
		},
	}
	apply.Flags().BoolVar(&prune, "prune", false, "also remove objects no manifest names any more")

	check := &cobra.Command{
		Use:   "check",
		Short: "Check every manifest and its object without loading anything",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := read()
			if err != nil {
				return err
			}
			if _, err := preload.Check(ms); err != nil {
				return err
			}
			if g.jsonOut() {
				if ms == nil {
					ms = []*preload.Manifest{}
				}
				return g.printJSON(ms)
			}
			fmt.Printf("%d manifests in %s are valid\n", len(ms), dir)
			return nil
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Compare the manifests with what is pinned",
		Long: `Compare the manifests with the pinned trees below --root, without changing
anything. The exit status says whether an apply would change something:

  0  every manifest's object is applied as written, and nothing else is pinned
  1  something differs: an object is changed, not applied, pinned without a
     manifest, or a killed apply left a staging tree
  2  status could not tell: a manifest is unreadable, or the root is`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := read()
			if err != nil {
				return statusError(err)
			}
			states, err := preload.Status(ms, preload.Options{Root: root})
			if err != nil {
				return statusError(err)
			}
			code := 0
			for _, s := range states {
				if s.State != preload.StateApplied {
					code = 1
				}
			}
			if g.jsonOut() {
				if err := g.printJSON(statusOf(states)); err != nil {
					return statusError(err)
				}
				return exitCode(code)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tORDER\tSTATE\tLINKS\tDETAILS")
			for _, s := range states {
				links := 0
				for _, e := range s.Pins {
					if e.Link != nil {
						links++
					}
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", s.Name, s.Order, s.State, links, s.Why)
			}
			if err := tw.Flush(); err != nil {
				return statusError(err)
			}
			return exitCode(code)
		},
	}

	remove := &cobra.Command{
		Use:               "remove NAME ...",
		Short:             "Unpin an object: its links detach, its maps and programs go",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completePreloadNames(&root),
		RunE: func(cmd *cobra.Command, args []string) error {
			var done []applyJSON
			for _, name := range args {
				start := time.Now()
				err := preload.Remove(name, preload.Options{Root: root})
				if g.jsonOut() {
					r := applyJSON{Name: name, Action: preload.Removed, DurationNS: time.Since(start).Nanoseconds()}
					if err != nil {
						r.Action, r.Error = preload.Failed, err.Error()
					}
					done = append(done, r)
					if err != nil {
						return printResults(g, done, err)
					}
					continue
				}
				if err != nil {
					return err
				}
				fmt.Printf("%s: removed\n", name)
			}
			if g.jsonOut() {
				return printResults(g, done, nil)
			}
			return nil
		},
	}
	// Whatever apply and remove did, the guard, if on, protects by id what
	// is pinned now.
	for _, c := range []*cobra.Command{apply, remove} {
		run := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			if serr := syncGuard(root); serr != nil {
				fmt.Fprintf(os.Stderr, "bpfgate: preload %s: %v\n", cmd.Name(), serr)
				if err == nil {
					return exitError{code: 1}
				}
			}
			return err
		}
	}
	cmd.AddCommand(apply, check, status, remove, newPreloadGuardCmd(g, &root))
	return cmd
}

// printResults prints per-object results under --json. When the command
// failed, the failed objects carry the error and nothing else is printed;
// an error no object carries is the whole output instead.
func printResults(g *globals, rs []applyJSON, err error) error {
	if err != nil && !slices.ContainsFunc(rs, func(r applyJSON) bool { return r.Error != "" }) {
		return err
	}
	if perr := g.printJSON(rs); perr != nil {
		return perr
	}
	if err != nil {
		return reported{err}
	}
	return nil
}

func countFailed(results []preload.Result) int {
	n := 0
	for _, r := range results {
		if r.Action == preload.Failed {
			n++
		}
	}
	return n
}

// statusError makes preload status exit 2, which tells "could not tell"
// from 1, "differs"; execute reports err (as JSON under --json).
func statusError(err error) error {
	return exitError{code: 2, err: err}
}

func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return exitError{code: code}
}
