package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/pins"
)

func newLsCmd(g *globals) *cobra.Command {
	var tree bool
	cmd := &cobra.Command{
		Use:   "ls [PATH ...]",
		Short: "List pinned maps, programs and links",
		Long: `List the objects pinned below each PATH (a bpffs directory or a pin), or in
every BPF filesystem when no PATH is given: kind, kernel id, type and name,
with map sizes, program tags and whether a link holds them, and where links
are attached.`,
		Example: `  bpfgate ls
  bpfgate ls --tree /sys/fs/bpf/bpfgate
  bpfgate ls -j /sys/fs/bpf | jq '.[] | select(.kind == "map") | .bytes_value'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			roots := args
			if len(roots) == 0 {
				var err error
				if roots, err = pins.Roots(); err != nil {
					return err
				}
			}
			out := bufio.NewWriterSize(os.Stdout, 64<<10)
			defer out.Flush()
			switch {
			case g.jsonOut():
				return listJSON(out, roots, g.pretty)
			case tree:
				return listTree(out, roots)
			}
			return listTable(out, roots)
		},
	}
	cmd.Flags().BoolVar(&tree, "tree", false, "draw the directory tree")
	return cmd
}

// listJSON streams one JSON array, so memory stays flat on large trees:
// one line as bpftool -j prints it, or one element per indented block.
// List opens every root before the first entry, so a bad root fails before
// anything is written and the error is the only document.
func listJSON(w *bufio.Writer, roots []string, pretty bool) error {
	n := 0
	err := pins.List(roots, pins.Options{}, func(e *pins.Entry) error {
		var b []byte
		var err error
		if pretty {
			b, err = json.MarshalIndent(entryOf(e), "    ", "    ")
		} else {
			b, err = json.Marshal(entryOf(e))
		}
		if err != nil {
			return err
		}
		switch {
		case n == 0 && pretty:
			w.WriteString("[\n    ")
		case n == 0:
			w.WriteByte('[')
		case pretty:
			w.WriteString(",\n    ")
		default:
			w.WriteByte(',')
		}
		n++
		_, err = w.Write(b)
		return err
	})
	switch {
	case err != nil && n == 0:
		return err
	case err != nil:
		// Half an array is out: close it with the error as its last
		// element, as bpftool does, and fail.
		b, _ := json.Marshal(errorJSON{err.Error()})
		w.WriteByte(',')
		w.Write(b)
		w.WriteString("]\n")
		return reported{err}
	case n == 0:
		w.WriteString("[]\n")
	case pretty:
		w.WriteString("\n]\n")
	default:
		w.WriteString("]\n")
	}
	return nil
}

func listTable(w io.Writer, roots []string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tKIND\tID\tTYPE\tNAME\tDETAILS")
	err := pins.List(roots, pins.Options{}, func(e *pins.Entry) error {
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Path, kindOf(e), idOf(e), dash(e.Type), dash(e.Name), details(e))
		return err
	})
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

func listTree(w io.Writer, roots []string) error {
	for _, root := range roots {
		var ents []*pins.Entry
		err := pins.List([]string{root}, pins.Options{Dirs: true}, func(e *pins.Entry) error {
			ents = append(ents, e)
			return nil
		})
		if err != nil {
			return err
		}
		writeTree(w, root, ents)
	}
	return nil
}

// writeTree draws entries (in walk order, root first) as a tree.
func writeTree(w io.Writer, root string, ents []*pins.Entry) {
	// last[i]: no later entry shares entry i's parent.
	last := make([]bool, len(ents))
	seen := map[string]bool{}
	for i := len(ents) - 1; i >= 0; i-- {
		parent := filepath.Dir(ents[i].Path)
		last[i] = !seen[parent]
		seen[parent] = true
	}
	// open[d] says whether the ancestor at depth d still has siblings below.
	var open []bool
	base := strings.Count(filepath.Clean(root), "/")
	for i, e := range ents {
		depth := strings.Count(e.Path, "/") - base
		if e.Path == filepath.Clean(root) {
			fmt.Fprintln(w, rootLabel(e))
			continue
		}
		open = open[:min(len(open), depth-1)]
		var b strings.Builder
		for _, o := range open {
			if o {
				b.WriteString("│   ")
			} else {
				b.WriteString("    ")
			}
		}
		if last[i] {
			b.WriteString("└── ")
		} else {
			b.WriteString("├── ")
		}
		b.WriteString(filepath.Base(e.Path))
		if e.Kind == pins.KindDir {
			b.WriteString("/")
		} else {
			fmt.Fprintf(&b, "  %s %s %s %s %s", kindOf(e), idOf(e), dash(e.Type), dash(e.Name), details(e))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if e.Kind == pins.KindDir {
			open = append(open, !last[i])
		}
	}
}

func rootLabel(e *pins.Entry) string {
	if e.Kind == pins.KindDir {
		return e.Path
	}
	return fmt.Sprintf("%s  %s %s %s %s %s", e.Path, kindOf(e), idOf(e), dash(e.Type), dash(e.Name), details(e))
}

func kindOf(e *pins.Entry) string {
	if e.Kind == "" {
		return "?"
	}
	return string(e.Kind)
}

func idOf(e *pins.Entry) string {
	if e.ID == 0 {
		return "-"
	}
	return strconv.FormatUint(uint64(e.ID), 10)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func details(e *pins.Entry) string {
	switch {
	case e.Error != "":
		return "error: " + e.Error
	case e.Map != nil:
		s := fmt.Sprintf("key %dB value %dB max_entries %d", e.Map.KeySize, e.Map.ValueSize, e.Map.MaxEntries)
		if e.Map.Flags != 0 {
			s += fmt.Sprintf(" flags %#x", e.Map.Flags)
		}
		return s
	case e.Program != nil:
		s := "tag " + e.Program.Tag
		if !e.Program.Attached {
			return s + " not attached"
		}
		ids := make([]string, len(e.Program.Links))
		for i, id := range e.Program.Links {
			ids[i] = strconv.FormatUint(uint64(id), 10)
		}
		return s + " attached by link " + strings.Join(ids, ",")
	case e.Link != nil:
		s := fmt.Sprintf("prog %d", e.Link.ProgramID)
		if e.Link.AttachType != "" {
			s += " " + e.Link.AttachType
		}
		if e.Link.Target != "" {
			s += " on " + e.Link.Target
		}
		return s
	case e.Kind == pins.KindSymlink:
		return "-> " + e.Target
	}
	return ""
}

func newPinCmd(g *globals) *cobra.Command {
	var parents bool
	cmd := &cobra.Command{
		Use:   "pin map|prog|link ID PATH",
		Short: "Pin a map, program or link by kernel id",
		Example: `  bpfgate pin map 42 /sys/fs/bpf/counts
  bpfgate pin -p link 7 /sys/fs/bpf/app/links/ingress`,
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: completePin,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := pins.Kind(args[0])
			if args[0] == "program" {
				kind = pins.KindProgram
			}
			id, err := strconv.ParseUint(args[1], 10, 32)
			if err != nil || id == 0 {
				return fmt.Errorf("id %q: want a kernel object id, a positive number (see bpftool %s show)", args[1], args[0])
			}
			if err := pins.PinID(kind, uint32(id), args[2], pins.PinOptions{Parents: parents}); err != nil {
				return err
			}
			return g.printNull()
		},
	}
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "create missing directories")
	// -p is --parents here, as mkdir's: this --pretty, without the
	// shorthand, stands in for the global one.
	cmd.Flags().BoolVar(&g.pretty, "pretty", false, "print indented JSON (implies --json)")
	return cmd
}

func newUnpinCmd(g *globals) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "unpin PATH ...",
		Short: "Remove pins; with -r, whole directories",
		Long: `Remove pins (or symlinks) from a BPF filesystem. An object nothing else holds
is freed; a link whose last reference goes is detached. With -r a directory
is checked first, then taken out of sight in one rename, then emptied; if
that still fails half way, what is left is put back and reported.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, p := range args {
				if err := pins.Unpin(p, pins.UnpinOptions{Recursive: recursive}); err != nil {
					return err
				}
			}
			return g.printNull()
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and everything below them")
	return cmd
}

func newMvCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "mv SRC DST",
		Short: "Rename a pin or directory atomically within one BPF filesystem",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := pins.Rename(args[0], args[1], pins.RenameOptions{Replace: force}); err != nil {
				return err
			}
			return g.printNull()
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace an existing pin at DST")
	return cmd
}
