package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
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
			header := manHeader{Source: "bpfgate " + v.Version, Manual: "bpfgate manual", Date: time.Now()}
			if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
				sec, err := strconv.ParseInt(epoch, 10, 64)
				if err != nil {
					return fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", epoch)
				}
				header.Date = time.Unix(sec, 0)
			} else if t, ok := v.commitTime(); ok {
				header.Date = t // so that a rebuild makes the same pages
			}
			if err := writeManTree(cmd.Root(), header, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
}
