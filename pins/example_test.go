package pins_test

import (
	"fmt"
	"log"

	"github.com/bpfgate/bpfgate/pins"
)

// List every pinned map, program and link on every bpffs, as bpftool's
// "-f" would find them.
func ExampleList() {
	roots, err := pins.Roots()
	if err != nil {
		log.Fatal(err)
	}
	err = pins.List(roots, pins.Options{}, func(e *pins.Entry) error {
		fmt.Println(e.Path, e.Kind, e.ID, e.Type, e.Name)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
