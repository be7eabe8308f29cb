package doctor_test

import (
	"fmt"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/doctor"
)

func ExampleProfileGap() {
	names := delegate.BuiltinNames()
	granted, _ := names.SetFlags("map_create,prog_load,btf_load", "hash", "socket_filter", "cgroup_inet_ingress")
	used, _ := names.SetFlags("map_create,prog_load", "hash,ringbuf", "raw_tracepoint", "")
	f := doctor.ProfileGap(names, granted, used)
	fmt.Println(f.Status)
	fmt.Println(f.Seen)
	fmt.Println(f.Fix)
	// Output:
	// fail
	// used but not delegated: maps ringbuf; progs raw_tracepoint; capabilities CAP_PERFMON
	// add to the delegation: --maps ringbuf --progs raw_tracepoint (bpfgate run keeps the capabilities the delegated types need); in the profile (config.yaml), add to its lists: maps: [ringbuf], progs: [raw_tracepoint], caps: [CAP_PERFMON]
}
