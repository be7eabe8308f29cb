// Package k8s holds the end-to-end tests of bpfgate under Kubernetes'
// container runtime interface: real containerd, CRI-O, runc, crictl,
// kubelet and the API server, all built at pinned versions by
// scripts/k8s-build.sh and found with testutil.K8sBin (CRI-O's conmon is
// Debian's).
//
// The harness starts a containerd of the run's own: its root, state,
// socket, CDI spec directory, NRI socket and configuration live in a
// temporary directory, and it runs in a mount namespace of its own with a
// private tmpfs on /run/containerd (where containerd puts shim sockets and
// FIFOs whatever its configuration says), so its mounts and sockets never
// appear on the host. Images are OCI archives the tests write themselves
// (busybox-static and the cilium/ebpf check program internal/cmd/ebpfcheck)
// and import with ctr: no registry. Pods and containers are made with
// crictl from JSON configs the tests write.
//
// StartKubelet (kubelet_test.go) runs a kubelet on a harness's containerd,
// standalone (static pods) or as the node of a ControlPlane
// (controlplane_test.go: etcd, API server, scheduler on loopback), in a
// mount namespace of its own where kubelet's fixed host paths
// (/var/lib/kubelet/device-plugins, /var/log/containers, the kernel
// settings it checks) are private; its pods' cgroups go below a cgroup root
// of its own, which Stop removes. An NRI plugin connects to
// Containerd.NRISocket; a device's CDI spec goes in Containerd.CDIDir.
//
// StartCRIO (crio_test.go) runs a CRI-O the same way: everything under a
// temporary directory (root, runroot, sockets, logs, CDI and hooks.d
// directories, its own policy.json, storage.conf and registries.conf),
// cgroupfs with a cgroup parent of its own, NRI off, every host path it has
// a default for overridden, in a mount namespace of its own with private
// tmpfs mounts on the caches that stay host paths whatever its
// configuration says (libcni's /var/lib/cni, containers/image's
// /var/lib/containers/cache). Images go into its storage with podman, run
// the same way. Its Stop fails the run if a host default appeared.
//
// After the last test the harness removes every pod, stops containerd and
// its shims, removes the cgroups its pods had, and fails the run if a mount,
// process or directory of its own is left.
package k8s
