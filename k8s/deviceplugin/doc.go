// Package deviceplugin is a Kubernetes device plugin that hands pods the
// bpfgate CDI devices.
//
// For each profile the host allows it serves one plugin on a socket in
// kubelet's device-plugin directory and registers the extended resource
// bpfgate.dev/bpf-PROFILE with kubelet. A profile is not a scarce device:
// many pods may share one, so each resource has Config.Devices
// interchangeable devices (that many containers of the node can hold it at
// once). Allocate answers with the CDI device bpfgate.dev/bpf=PROFILE and
// nothing else: kubelet passes it to the runtime (containerd, CRI-O) in the
// CRI CDI field, and the runtime runs bpfgate's OCI hook from the spec that
// `bpfgate cdi generate` wrote. The hook, not this plugin, is the trust
// boundary: it checks the profile against the host policy and the
// container's user namespace and capabilities.
//
// kubelet removes every socket in its directory when it starts, so the
// plugin watches kubelet's socket: when it is recreated (or one of the
// plugin's own sockets disappears) the plugin listens again and registers
// again. On return Run removes only the sockets it made. It does not serve
// in a directory others may write (kubelet makes its own 0750): whoever
// could replace its socket could answer kubelet with any CDI device.
package deviceplugin
