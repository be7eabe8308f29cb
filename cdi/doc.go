// Package cdi makes BPF rights a CDI (Container Device Interface) device.
//
// Each profile the host allows becomes a device of kind bpfgate.dev/bpf,
// so that `podman run --device bpfgate.dev/bpf=net` (or containerd and
// CRI-O, which read the same specs) gives a container the net profile's
// delegated bpffs. A device's only container edit is an OCI createRuntime
// hook that runs `bpfgate oci-hook --profile NAME` (see package ocihook).
// Specs are built and validated with the CDI project's own Go packages.
package cdi
