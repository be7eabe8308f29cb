package deviceplugin_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/k8s/deviceplugin"
	"github.com/bpfgate/bpfgate/profile"
)

// Serve the host's allowed profiles to kubelet until interrupted.
func Example() {
	names, err := delegate.KernelNames()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	pol, err := profile.LoadPolicy(profile.DefaultConfig, names, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	var allowed []string
	for _, p := range pol.Profiles {
		allowed = append(allowed, p.Name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err = deviceplugin.Run(ctx, deviceplugin.Config{
		Profiles: allowed, // bpfgate.dev/bpf-NAME each
		Devices:  64,      // containers per profile at once
		Log:      func(e deviceplugin.Event) { fmt.Fprintf(os.Stderr, "%+v\n", e) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
