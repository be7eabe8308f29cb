package profile_test

import (
	"fmt"
	"log"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/profile"
)

// The host's policy decides which profiles exist; a profile resolves into
// a Grant on the running kernel: the delegation, the capabilities and the
// bpffs path.
func ExampleLoadPolicy() {
	names := delegate.BuiltinNames() // or delegate.KernelNames()
	pol, err := profile.LoadPolicy("/nonexistent/bpfgate.yaml", names, true)
	if err != nil {
		log.Fatal(err)
	}
	p, err := pol.Find("demo")
	if err != nil {
		log.Fatal(err)
	}
	g, err := p.Grant(names)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pol.Describe())
	fmt.Println(names.FormatOptions(g.Delegation))
	fmt.Println(g.Caps, g.Path)
	// Output:
	// built-in profiles (no /nonexistent/bpfgate.yaml)
	// delegate_cmds=map_create:prog_load:btf_load,delegate_maps=hash:array,delegate_progs=socket_filter,delegate_attachs=cgroup_inet_ingress
	// [CAP_BPF] /sys/fs/bpf
}
