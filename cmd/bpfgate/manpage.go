package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The man pages are written here rather than with cobra/doc, whose
// Markdown renderer costs every start of bpfgate 0.24 ms of package
// initialisation for pages that are written once, at packaging time.

// manHeader is what every page's .TH line carries.
type manHeader struct {
	Date           time.Time
	Source, Manual string
}

// writeManTree writes a page for cmd and for each available subcommand,
// named after the command path with '-' for ' ' (bpfgate-preload-apply.1).
func writeManTree(cmd *cobra.Command, h manHeader, dir string) error {
	for _, sub := range cmd.Commands() {
		if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := writeManTree(sub, h, dir); err != nil {
			return err
		}
	}
	name := strings.ReplaceAll(cmd.CommandPath(), " ", "-")
	f, err := os.Create(filepath.Join(dir, name+".1"))
	if err != nil {
		return err
	}
	if err := writeManPage(f, cmd, name, h); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeManPage(w io.Writer, cmd *cobra.Command, name string, h manHeader) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH \"%s\" \"1\" \"%s\" \"%s\" \"%s\"\n", strings.ToUpper(name),
		h.Date.UTC().Format("Jan 2006"), roff(h.Source), roff(h.Manual))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roff(name), roff(cmd.Short))
	fmt.Fprintf(&b, ".SH SYNOPSIS\n\\fB%s\\fP\n", roff(cmd.UseLine()))
	desc := cmd.Long
	if desc == "" {
		desc = cmd.Short
	}
	fmt.Fprintf(&b, ".SH DESCRIPTION\n%s\n", roffText(desc))
	manFlags(&b, "OPTIONS", cmd.NonInheritedFlags())
	manFlags(&b, "OPTIONS INHERITED FROM PARENT COMMANDS", cmd.InheritedFlags())
	if cmd.Example != "" {
		fmt.Fprintf(&b, ".SH EXAMPLE\n.nf\n%s\n.fi\n", roff(cmd.Example))
	}
	var see []string
	if p := cmd.Parent(); p != nil {
		see = append(see, strings.ReplaceAll(p.CommandPath(), " ", "-")+"(1)")
	}
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
			see = append(see, strings.ReplaceAll(sub.CommandPath(), " ", "-")+"(1)")
		}
	}
	if len(see) > 0 {
		fmt.Fprintf(&b, ".SH SEE ALSO\n%s\n", roff(strings.Join(see, ", ")))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func manFlags(b *strings.Builder, title string, fs *pflag.FlagSet) {
	if !fs.HasAvailableFlags() {
		return
	}
	fmt.Fprintf(b, ".SH %s\n", title)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		b.WriteString(".TP\n")
		if f.Shorthand != "" && f.ShorthandDeprecated == "" {
			fmt.Fprintf(b, "\\fB-%s\\fP, ", f.Shorthand)
		}
		fmt.Fprintf(b, "\\fB--%s\\fP", f.Name)
		if f.Value.Type() != "bool" {
			fmt.Fprintf(b, "=%s", roff(f.Value.Type()))
			if f.DefValue != "" && f.DefValue != "[]" {
				fmt.Fprintf(b, " (default %s)", roff(f.DefValue))
			}
		}
		fmt.Fprintf(b, "\n%s\n", roff(f.Usage))
	})
}

// roff escapes text for a roff line: backslashes and hyphens, and a line
// may not start with a control character.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// roffText is roff for paragraphs: blank lines start new ones.
func roffText(s string) string {
	var lines []string
	for _, l := range strings.Split(roff(strings.TrimSpace(s)), "\n") {
		switch {
		case strings.TrimSpace(l) == "":
			lines = append(lines, ".PP")
		case strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'"):
			lines = append(lines, `\&`+l)
		default:
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
