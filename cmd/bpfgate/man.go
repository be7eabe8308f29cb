package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages (bpfgate.1 and one per subcommand) into DIR",
		Long: `Write the man pages, generated from the commands and flags of this binary,
into DIR (created if missing): bpfgate.1, and bpfgate-SUB.1 for every
subcommand. The date on the pages is $SOURCE_DATE_EPOCH when set, else the
commit time of the build, so that a rebuild makes the same pages.`,
		Example: `  bpfgate man /tmp/man && man -l /tmp/man/bpfgate-run.1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			v := currentVersion()
			header := &doc.GenManHeader{
				Section: "1",
				Source:  "bpfgate " + v.Version,
				Manual:  "bpfgate manual",
			}
			if os.Getenv("SOURCE_DATE_EPOCH") == "" {
				// Left nil, the date would be today's: use the commit's.
				if t, ok := v.commitTime(); ok {
					header.Date = &t
				} else {
					now := time.Now()
					header.Date = &now
				}
			}
			root := cmd.Root()
			// The generator adds a dated "Auto generated" line: the header
			// date is the only one the pages carry.
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
}
