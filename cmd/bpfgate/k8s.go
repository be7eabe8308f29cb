package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/k8s/deviceplugin"
)

func newK8sCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "k8s",
		Short: "Give Kubernetes pods BPF rights (device plugin)",
	}
	var (
		dir     string
		devices int
	)
	dp := &cobra.Command{
		Use:   "device-plugin",
		Short: "Serve the allowed profiles to kubelet as bpfgate.dev/bpf-PROFILE resources",
		Long: `Serve kubelet's device-plugin API: one extended resource
bpfgate.dev/bpf-PROFILE for each profile the host allows (the config file's,
or the built-in ones when there is no file), with --devices devices each, so
that many pods can share a profile. A container that asks for one gets the
CDI device bpfgate.dev/bpf=PROFILE, which the runtime resolves through the
spec of 'bpfgate cdi generate' (run it on the node first). The pod needs
hostUsers: false and capabilities.add: ["BPF"]. It registers again whenever
kubelet restarts, and runs until SIGINT or SIGTERM. Under --json it prints
one JSON line per event.`,
		Example: `  bpfgate cdi generate
  bpfgate k8s device-plugin --devices 64
  # in the pod: resources: {limits: {bpfgate.dev/bpf-demo: 1}}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if devices < 1 || devices > deviceplugin.MaxDevices {
				// 0 would be the library's default.
				return fmt.Errorf("%w: --devices %d: give 1 to %d", deviceplugin.ErrConfig, devices, deviceplugin.MaxDevices)
			}
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			pol, err := g.policy(names)
			if err != nil {
				return err
			}
			var profiles []string
			for _, p := range pol.Profiles {
				profiles = append(profiles, p.Name)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
			defer stop()
			var mu sync.Mutex
			return deviceplugin.Run(ctx, deviceplugin.Config{
				Profiles: profiles,
				Dir:      dir,
				Devices:  devices,
				Log: func(e deviceplugin.Event) {
					mu.Lock()
					defer mu.Unlock()
					if g.jsonOut() {
						g.printJSON(e)
						return
					}
					msg := "bpfgate: " + e.Action
					if e.Resource != "" {
						msg += " " + e.Resource
					}
					if e.Socket != "" {
						msg += fmt.Sprintf(" at %s", e.Socket)
					}
					if e.Devices != 0 {
						msg += fmt.Sprintf(" (%d devices)", e.Devices)
					}
					if e.Error != "" {
						msg += ": " + e.Error
					}
					fmt.Fprintln(os.Stderr, msg)
				},
			})
		},
	}
	dp.Flags().StringVar(&dir, "kubelet-dir", deviceplugin.DefaultDir, "kubelet's device-plugin directory (its kubelet.sock)")
	dp.Flags().IntVar(&devices, "devices", deviceplugin.DefaultDevices, "devices per profile: how many containers can hold one at once")
	cmd.AddCommand(dp)
	return cmd
}
