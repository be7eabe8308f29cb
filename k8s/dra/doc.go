// Package dra is a Kubernetes Dynamic Resource Allocation driver (a kubelet
// plugin) that hands pods the bpfgate CDI devices.
//
// It publishes, for its node, a ResourceSlice of driver bpfgate.dev with
// Config.Devices devices per profile the host allows, each with the
// attribute bpfgate.dev/profile; a DeviceClass per profile selects them,
// as DeviceClasses makes them (bpfgate k8s dra device-classes). When kubelet prepares a ResourceClaim
// allocated one of them, the driver answers with the CDI device
// bpfgate.dev/bpf=PROFILE, which kubelet passes to the runtime. As with the
// device plugin, bpfgate's OCI hook is the trust boundary: it checks the
// profile against the host policy and the container's user namespace and
// capabilities when the container starts. Run does not serve from a data
// or registrar directory others may write: whoever could replace its
// sockets could answer kubelet with any CDI device.
package dra
