// Command ciliumiter loads a BPF object with cilium/ebpf, as any program
// built on it would (the library finds the token by itself and probes
// features first), attaches one of its iterators and prints what it
// yields: a workload for `bpfgate profile`'s tests.
//
//	ciliumiter OBJECT PROGRAM
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: ciliumiter OBJECT PROGRAM")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "ciliumiter:", err)
		os.Exit(1)
	}
}

func run(object, name string) error {
	spec, err := ebpf.LoadCollectionSpec(object)
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return err
	}
	defer coll.Close()
	prog := coll.Programs[name]
	if prog == nil {
		return fmt.Errorf("%s has no program %s", object, name)
	}
	l, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return err
	}
	defer l.Close()
	it, err := l.Open()
	if err != nil {
		return err
	}
	defer it.Close()
	_, err = io.Copy(os.Stdout, it)
	return err
}
