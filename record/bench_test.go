package record

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/recordbench"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

const benchEnv = "BPFGATE_RECORD_BENCH_N"

// BenchmarkCalls times, inside a sandboxed workload, getppid,
// bpf(BPF_MAP_LOOKUP_ELEM) and a failing bpf(BPF_MAP_CREATE), plain and
// recorded (the metric is ns/call; ns/op includes starting the sandbox).
// bench/record.sh prints the same as a table of deltas.
func BenchmarkCalls(b *testing.B) {
	testutil.RequireRoot(b)
	names, err := delegate.KernelNames()
	if err != nil {
		b.Fatal(err)
	}
	set, err := names.SetFlags("map_create", "array", "", "")
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range recordbench.Kinds {
		for _, rec := range []bool{false, true} {
			name := strings.NewReplacer("(", "_", ")", "", " ", "_").Replace(kind) + map[bool]string{false: "/plain", true: "/recorded"}[rec]
			b.Run(name, func(b *testing.B) {
				var stdout, stderr bytes.Buffer
				w, err := launch.Start(launch.Config{Args: []string{"/proc/self/exe"},
					Env:        append(os.Environ(), workloadEnv+"=bench", benchEnv+"="+strconv.Itoa(b.N)),
					Delegation: set, RecordBPF: rec, Stdout: &stdout, Stderr: &stderr})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan struct{})
				if l := w.BPFListener(); l != nil {
					go func() {
						defer close(done)
						defer l.Close()
						Serve(ctx, l)
					}()
				} else {
					close(done)
				}
				code, err := w.Wait()
				cancel()
				<-done
				if err != nil || code != 0 {
					b.Fatalf("exit %d, %v: %s", code, err, stderr.String())
				}
				var res map[string]float64
				if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res[kind], "ns/call")
			})
		}
	}
}
