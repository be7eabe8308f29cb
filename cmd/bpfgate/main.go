// Command bpfgate delegates BPF to unprivileged workloads through BPF tokens.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/bpfgate/bpfgate/launch"
)

// exitError carries an exit code without another message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

type globals struct {
	json   bool
	config string
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
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "bpfgate:", err)
	return 1
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
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print JSON")
	root.PersistentFlags().StringVar(&g.config, "config", defaultConfig(), "config file with the allowed profiles (when it exists, only its profiles are allowed)")
	root.AddCommand(newRunCmd(g), newMountCmd(g), newTokenCmd(g), newNamesCmd(g),
		newCheckCmd(g), newProfilesCmd(g), newCDICmd(g), newOCIHookCmd(g),
		newLsCmd(g), newPinCmd(g), newUnpinCmd(g), newMvCmd(g), newPreloadCmd(g))
	root.AddCommand(newVersionCmd(g), newManCmd())
	return root
}

const configEnv = "BPFGATE_CONFIG"

func defaultConfig() string {
	if p := os.Getenv(configEnv); p != "" {
		return p
	}
	return "/etc/bpfgate/config.yaml"
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
