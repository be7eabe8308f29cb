//go:build k8s

package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/k8s/nri"
)

func newK8sNRICmd(g *globals) *cobra.Command {
	var (
		hf   hookFlags
		opts nri.Options
	)
	cmd := &cobra.Command{
		Use:   "nri",
		Short: "NRI plugin for containerd: pods annotated " + nri.ProfileAnnotation + "=PROFILE get the profile's bpffs",
		Long: `nri runs bpfgate's NRI plugin: for each container of a pod annotated
` + nri.ProfileAnnotation + `=PROFILE (or ` + nri.ContainerAnnotationPrefix + `NAME=PROFILE for one
container), it checks that the host policy allows the profile and that the
container has a user namespace, adds the createRuntime hook
'bpfgate oci-hook --profile PROFILE', and lets bpf(2) through the container's
seccomp policy when it would block it. It refuses the container otherwise;
the hook refuses one without CAP_BPF when it starts. It connects again when
containerd restarts, and stops on SIGINT or SIGTERM. See docs/kubernetes.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hook, err := hf.hook(g)
			if err != nil {
				return err
			}
			opts.Hook = hook
			opts.Policy = g.policy
			opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			nrilog.Set(nri.NRILogger(opts.Log))
			p, err := nri.New(opts)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
			defer stop()
			return p.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&opts.Socket, "socket", nri.DefaultSocket, "the runtime's NRI socket")
	cmd.Flags().StringVar(&opts.Name, "plugin-name", nri.DefaultName, "name the plugin registers with")
	cmd.Flags().StringVar(&opts.Index, "plugin-idx", nri.DefaultIndex, "two-digit index that orders the runtime's plugins")
	hf.register(cmd)
	return cmd
}
