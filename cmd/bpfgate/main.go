// Command bpfgate delegates BPF to unprivileged workloads through BPF tokens.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/profile"
)

// exitError carries an exit code without another message.
// exitError carries an exit code, and the error to report with it if any
// (printed as JSON under --json).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

type globals struct {
	json, pretty bool
	config       string
}

func main() {
	launch.Init()
	os.Exit(execute(os.Args[1:]))
}

func execute(args []string) int {
	g := &globals{}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.Execute()
	var (
		ee exitError
		re reported
	)
	code := 1
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.err == nil:
		return ee.code
	case errors.As(err, &ee):
		code, err = ee.code, ee.err
	case errors.As(err, &re):
		return 1
	}
	if g.jsonOut() || wantsJSON(args) {
		// As bpftool: the error is the JSON document on stdout.
		if jerr := writeJSON(os.Stdout, errorJSON{err.Error()}, g.pretty); jerr == nil {
			return code
		}
	}
	fmt.Fprintln(os.Stderr, "bpfgate:", err)
	return code
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "bpfgate",
		Short: "Delegate BPF to unprivileged workloads through BPF tokens",
		Long: `bpfgate mounts BPF filesystems that delegate BPF commands, map types,
program types and attach types to a user namespace, so that unprivileged
workloads can derive a BPF token and use exactly what was delegated.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVarP(&g.json, "json", "j", false, "print JSON, one line per document (as bpftool -j)")
	root.PersistentFlags().BoolVarP(&g.pretty, "pretty", "p", false, "print indented JSON (implies --json)")
	root.PersistentFlags().StringVar(&g.config, "config", defaultConfig(), "config file with the allowed profiles (when it exists, only its profiles are allowed)")
	root.AddCommand(newRunCmd(g), newMountCmd(g), newTokenCmd(g), newNamesCmd(g),
		newCheckCmd(g), newProfilesCmd(g), newCDICmd(g), newOCIHookCmd(g),
		newLsCmd(g), newPinCmd(g), newUnpinCmd(g), newMvCmd(g), newPreloadCmd(g), newProfileCmd(g),
		newDoctorCmd(g), newDoctorHoldCmd(), newAuditCmd(g))
	root.AddCommand(newK8sCmd(g))
	root.AddCommand(newVersionCmd(g), newManCmd())
	return root
}

const configEnv = "BPFGATE_CONFIG"

func defaultConfig() string {
	if p := os.Getenv(configEnv); p != "" {
		return p
	}
	return profile.DefaultConfig
}
