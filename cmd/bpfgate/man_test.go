package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// genMan runs `bpfgate man DIR` on a fresh command tree and returns the tree
// as Execute left it (with the help and completion commands cobra adds).
func genMan(t *testing.T, dir string) *cobra.Command {
	t.Helper()
	root := newRoot(&globals{})
	root.SetArgs([]string{"man", dir})
	if err := root.Execute(); err != nil {
		t.Fatalf("man %s: %v", dir, err)
	}
	return root
}

func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "86400")
	dir := t.TempDir()
	root := genMan(t, dir)

	var want []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root || c.IsAdditionalHelpTopicCommand() {
			return
		}
		page := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		want = append(want, page)
		t.Run(page, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, page))
			if err != nil {
				t.Fatalf("command %q has no man page: %v", c.CommandPath(), err)
			}
			text := string(b)
			if !strings.Contains(text, `.TH "`+strings.ToUpper(strings.ReplaceAll(c.CommandPath(), " ", "-"))+`" "1"`) {
				t.Errorf("%s: no .TH header for %q", page, c.CommandPath())
			}
			if !strings.Contains(text, "Jan 1970") {
				t.Errorf("%s: the date is not SOURCE_DATE_EPOCH's", page)
			}
			if c.Short != "" && !strings.Contains(text, roff(c.Short)) {
				t.Errorf("%s: no summary %q", page, c.Short)
			}
			check := func(f *pflag.Flag) {
				if f.Hidden {
					return
				}
				if !strings.Contains(text, `\fB--`+f.Name+`\fP`) {
					t.Errorf("%s: flag --%s is missing", page, f.Name)
				}
				if f.Shorthand != "" && !strings.Contains(text, `\fB-`+f.Shorthand+`\fP`) {
					t.Errorf("%s: flag -%s is missing", page, f.Shorthand)
				}
			}
			c.NonInheritedFlags().VisitAll(check)
			c.InheritedFlags().VisitAll(check)
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages:\n got %v\nwant %v", got, want)
	}
	// Every subcommand that has subcommands of its own was walked: a few
	// known ones make sure the walk itself did not stop early.
	for _, page := range []string{"bpfgate.1", "bpfgate-version.1", "bpfgate-man.1", "bpfgate-completion-bash.1", "bpfgate-preload.1"} {
		if !slices.Contains(got, page) {
			t.Errorf("no %s", page)
		}
	}
}

func TestManPagesReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "86400")
	a, b := t.TempDir(), t.TempDir()
	genMan(t, a)
	genMan(t, b)
	entries, err := os.ReadDir(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		x, _ := os.ReadFile(filepath.Join(a, e.Name()))
		y, err := os.ReadFile(filepath.Join(b, e.Name()))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", e.Name())
		}
	}
}
