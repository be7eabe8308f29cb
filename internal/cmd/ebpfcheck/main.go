// Command ebpfcheck is the container tests' workload: a static program on
// cilium/ebpf that prints, as JSON, which maps and programs it could make.
package main

import (
	"encoding/json"
	"os"

	"github.com/bpfgate/bpfgate/internal/ebpfcheck"
)

func main() {
	json.NewEncoder(os.Stdout).Encode(ebpfcheck.Run())
}
