package token_test

import (
	"fmt"
	"log"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/token"
)

// Inside a workload: make a token from the delegated bpffs and read what it
// allows, decoded to the running kernel's names.
func ExampleCreate() {
	t, err := token.Create(delegate.DefaultPath)
	if err != nil {
		log.Fatal(err) // the error says why: not delegated, wrong namespace, no CAP_BPF...
	}
	defer t.Close()
	info, err := t.Info()
	if err != nil {
		log.Fatal(err)
	}
	names, err := delegate.KernelNames()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(names.FormatOptions(info.Allowed))
}
