// Command ebpfcheck is the container tests' workload: a static program on
// cilium/ebpf that prints, as JSON, which maps and programs it could make.
// "ebpfcheck audit [BPFFS]" makes only a hash map and a ring buffer with a
// token of BPFFS (/sys/fs/bpf), for the audit tests.
package main

import (
	"encoding/json"
	"os"

	"github.com/bpfgate/bpfgate/internal/ebpfcheck"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "audit" {
		path := "/sys/fs/bpf"
		if len(os.Args) > 2 {
			path = os.Args[2]
		}
		json.NewEncoder(os.Stdout).Encode(ebpfcheck.RunAudited(path))
		return
	}
	json.NewEncoder(os.Stdout).Encode(ebpfcheck.Run())
}
