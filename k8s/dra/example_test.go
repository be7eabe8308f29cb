package dra_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bpfgate/bpfgate/k8s/dra"
)

// Run the driver in a DaemonSet's pod: the pod's service account reaches
// the API server, NODE_NAME comes from the downward API.
func Example() {
	rc, err := rest.InClusterConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err = dra.Run(ctx, dra.Config{
		Profiles: []string{"demo"}, // the host policy's profiles
		Node:     os.Getenv("NODE_NAME"),
		Client:   client,
		Log:      func(e dra.Event) { fmt.Fprintf(os.Stderr, "%+v\n", e) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// Write the DeviceClasses of the host's profiles for kubectl apply -f -,
// as bpfgate k8s dra device-classes does.
func ExampleDeviceClasses() {
	classes, err := dra.DeviceClasses([]string{"demo", "tracing"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	if err := dra.WriteYAML(os.Stdout, classes); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	// Output:
	// apiVersion: resource.k8s.io/v1
	// kind: DeviceClass
	// metadata:
	//   labels:
	//     bpfgate.dev/profile: demo
	//   name: bpfgate-demo
	// spec:
	//   selectors:
	//   - cel:
	//       expression: device.driver == "bpfgate.dev" && device.attributes["bpfgate.dev"].profile
	//         == "demo"
	// ---
	// apiVersion: resource.k8s.io/v1
	// kind: DeviceClass
	// metadata:
	//   labels:
	//     bpfgate.dev/profile: tracing
	//   name: bpfgate-tracing
	// spec:
	//   selectors:
	//   - cel:
	//       expression: device.driver == "bpfgate.dev" && device.attributes["bpfgate.dev"].profile
	//         == "tracing"
}
