// Command compare times commands against a baseline in the same run,
// interleaved so that machine noise hits both alike, and prints the median
// wall time of each and its ratio to the baseline (the first command).
//
//	go run ./bench/compare -n 200 -- 'unshare -Urm true' 'bpfgate run --profile demo -- true'
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

func main() {
	n := flag.Int("n", 100, "runs of each command")
	flag.Parse()
	cmds := flag.Args()
	if len(cmds) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compare [-n N] BASELINE CMD...")
		os.Exit(2)
	}
	times := make([][]time.Duration, len(cmds))
	for i := 0; i < *n+3; i++ {
		for j, c := range cmds {
			f := strings.Fields(c)
			cmd := exec.Command(f[0], f[1:]...)
			cmd.Stdout, cmd.Stderr = nil, os.Stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", c, err)
				os.Exit(1)
			}
			if i >= 3 { // warm-up runs are not counted
				times[j] = append(times[j], time.Since(start))
			}
		}
	}
	base := median(times[0])
	for j, c := range cmds {
		m := median(times[j])
		fmt.Printf("%-60s median %7.3f ms  p90 %7.3f ms  ratio %.2f\n", c, ms(m), ms(pct(times[j], 90)), float64(m)/float64(base))
	}
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*p/100]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
