// Command pinmaps pins N small array maps in a directory on a bpffs, for
// benchmarking listings of large pin trees.
//
//	go run ./bench/pinmaps -n 10000 /run/bench-bpffs
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
)

func main() {
	n := flag.Int("n", 10000, "maps to pin")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pinmaps [-n N] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	for i := range *n {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: fmt.Sprintf("bench%d", i), Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		if err == nil {
			err = m.Pin(fmt.Sprintf("%s/m%d", dir, i))
			m.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pinmaps:", err)
			os.Exit(1)
		}
	}
}
