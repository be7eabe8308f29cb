package preload_test

import (
	"fmt"
	"log"

	"github.com/bpfgate/bpfgate/preload"
)

// Keep the objects that the manifests of a directory name loaded, attached
// and pinned: what changed is rebuilt beside the old and swapped in, the
// rest is left running.
func ExampleApply() {
	ms, err := preload.ReadDir("/etc/bpfgate/preload.d")
	if err != nil {
		log.Fatal(err)
	}
	results, err := preload.Apply(ms, preload.Options{})
	for _, r := range results {
		fmt.Println(r.Name, r.Action, r.Why)
	}
	if err != nil {
		log.Fatal(err)
	}
}
