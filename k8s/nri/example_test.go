package nri_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"github.com/bpfgate/bpfgate/cdi"
	"github.com/bpfgate/bpfgate/k8s/nri"
)

// A pod's annotations select a profile for each of its containers.
func ExampleProfileOf() {
	annotations := map[string]string{
		"bpfgate.dev/profile":                    "demo",
		"bpfgate.dev/profile.container.sidecar":  "",
		"bpfgate.dev/profile.container.exporter": "net-observe",
	}
	for _, c := range []string{"app", "sidecar", "exporter"} {
		fmt.Printf("%s: %q\n", c, nri.ProfileOf(annotations, c))
	}
	// Output:
	// app: "demo"
	// sidecar: ""
	// exporter: "net-observe"
}

// Serve containerd's NRI socket until SIGTERM, as `bpfgate k8s nri` does.
func ExampleNew() {
	p, err := nri.New(nri.Options{
		Socket: nri.DefaultSocket,
		Hook:   cdi.Hook{Path: "/usr/local/bin/bpfgate"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
