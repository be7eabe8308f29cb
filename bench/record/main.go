// Command record measures what `bpfgate profile`'s recorder costs a
// workload, per system call, in one run: a workload in bpfgate's sandbox
// times getppid, bpf(BPF_MAP_LOOKUP_ELEM) (let through by the recorder's
// filter) and a bpf(BPF_MAP_CREATE) that fails at once (notified when
// recorded), once plain and once recorded, interleaved -rounds times; the
// medians, deltas and ratios are printed. Run as root:
//
//	go run ./bench/record [-n 200000] [-rounds 5]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/recordbench"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/record"
)

const workloadEnv = "BPFGATE_BENCH_RECORD_N"

func main() {
	launch.Init()
	if n := os.Getenv(workloadEnv); n != "" {
		calls, _ := strconv.Atoi(n)
		res, err := recordbench.Workload(calls, 3)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	n := flag.Int("n", 200000, "calls per loop")
	rounds := flag.Int("rounds", 5, "runs of each workload, interleaved")
	cloop := flag.String("c", "", "also time the notified call from a C workload: bench/floor/notify built here")
	flag.Parse()
	names, err := delegate.KernelNames()
	if err != nil {
		fail(err)
	}
	set, err := names.SetFlags("map_create", "array", "", "")
	if err != nil {
		fail(err)
	}
	got := map[bool]map[string][]float64{false: {}, true: {}}
	for range *rounds {
		for _, rec := range []bool{false, true} {
			res, err := measure(set, rec, []string{"/proc/self/exe"}, workloadEnv+"="+strconv.Itoa(*n))
			if err == nil && *cloop != "" {
				var c map[string]float64
				c, err = measure(set, rec, []string{*cloop, "loop", strconv.Itoa(*n), "3"}, "")
				maps.Copy(res, c)
			}
			if err != nil {
				fail(err)
			}
			for k, v := range res {
				got[rec][k] = append(got[rec][k], v)
			}
		}
	}
	fmt.Printf("%d calls per loop, median of %d sandboxes each\n", *n, *rounds)
	fmt.Printf("%-28s %12s %12s %10s %7s\n", "call", "plain ns", "recorded ns", "delta ns", "ratio")
	kinds := recordbench.Kinds
	if *cloop != "" {
		kinds = append(kinds, "bpf(BPF_MAP_CREATE) EINVAL, C")
	}
	for _, k := range kinds {
		p, r := median(got[false][k]), median(got[true][k])
		fmt.Printf("%-28s %12.1f %12.1f %+10.1f %7.2f\n", k, p, r, r-p, r/p)
	}
}

func measure(set delegate.Set, rec bool, args []string, env string) (map[string]float64, error) {
	var stdout, stderr bytes.Buffer
	w, err := launch.Start(launch.Config{Args: args,
		Env:        append(os.Environ(), env),
		Delegation: set, RecordBPF: rec, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if l := w.BPFListener(); l != nil {
		go func() {
			defer l.Close()
			_, err := record.Serve(ctx, l)
			done <- err
		}()
	} else {
		done <- nil
	}
	code, err := w.Wait()
	cancel()
	if serr := <-done; serr != nil {
		return nil, serr
	}
	if err != nil || code != 0 {
		return nil, fmt.Errorf("workload: exit %d, %v: %s", code, err, stderr.String())
	}
	var res map[string]float64
	return res, json.Unmarshal(stdout.Bytes(), &res)
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "record:", err)
	os.Exit(1)
}
