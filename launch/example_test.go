package launch_test

import (
	"fmt"
	"log"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/launch"
)

// Run a program unprivileged, in a sandbox, with the right to create hash
// and array maps and load socket filters through a BPF token (it finds the
// token at /sys/fs/bpf by itself if it uses libbpf 1.4+ or cilium/ebpf).
// The program calling this must call launch.Init() first thing in main.
func Example() {
	names, err := delegate.KernelNames()
	if err != nil {
		log.Fatal(err)
	}
	set, err := names.SetFlags("map_create:prog_load:btf_load", "hash:array", "socket_filter", "cgroup_inet_ingress")
	if err != nil {
		log.Fatal(err)
	}
	code, err := launch.Run(launch.Config{
		Args:       []string{"bpftool", "prog", "load", "filter.o", "/sys/fs/bpf/filter"},
		Delegation: set,
		Caps:       delegate.CapsFor(names, set),
	})
	fmt.Println(code, err)
}

// Mount a delegated bpffs into a process that runs in user and mount
// namespaces of its own (a container's init, say), held by a pidfd so that a
// reused pid is never mistaken for it.
func ExampleMountIntoDir() {
	var pid int // the target
	names, err := delegate.KernelNames()
	if err != nil {
		log.Fatal(err)
	}
	set, err := names.SetFlags("map_create", "hash", "", "")
	if err != nil {
		log.Fatal(err)
	}
	p, err := launch.OpenProcess(pid)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	dir, err := p.OpenInRoot("/sys/fs/bpf") // as the process sees it
	if err != nil {
		log.Fatal(err)
	}
	defer dir.Close()
	if err := launch.MountIntoDir(p, dir, bpffs.Options{Delegation: set}); err != nil {
		log.Fatal(err)
	}
}
