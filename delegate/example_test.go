package delegate_test

import (
	"fmt"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/profile"
)

// Parse a delegation as the kernel would and print it as mountinfo does.
func ExampleNames_ParseMask() {
	names := delegate.BuiltinNames() // delegate.KernelNames() for the running kernel
	m, err := names.ParseMask(delegate.Cmds, "BPF_PROG_LOAD:map_create:0x1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(names.FormatMask(delegate.Cmds, m))
	// Output: map_create:prog_load
}

// Typos get the closest valid names.
func ExampleParseError() {
	names := delegate.BuiltinNames()
	_, err := names.ParseList(delegate.Progs, "socket_filtr,xdp")
	fmt.Println(err)
	// Output: delegate_progs: unknown program type "socket_filtr"; did you mean socket_filter?
}

// Lint finds delegations that the kernel accepts but that do not work.
func ExampleNames_Lint() {
	names := delegate.BuiltinNames()
	set, _ := names.SetFlags("map_create:prog_load:btf_load", "hash", "socket_filter", "")
	for _, w := range names.Lint(set) {
		fmt.Println(w.Code)
	}
	// Output: attach-type-zero
}

// A built-in profile, resolved against the kernel's names.
func ExampleProfile_Resolve() {
	names := delegate.BuiltinNames()
	p, _ := profile.Find(profile.Builtins(), "demo")
	set, _, _ := p.Resolve(names)
	fmt.Println(names.FormatOptions(set))
	// Output: delegate_cmds=map_create:prog_load:btf_load,delegate_maps=hash:array,delegate_progs=socket_filter,delegate_attachs=cgroup_inet_ingress
}
