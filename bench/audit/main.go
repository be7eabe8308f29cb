// Command audit measures what `bpfgate audit`'s tracer costs, per system
// call, in one run: a workload in bpfgate's sandbox (demo-like delegation)
// times getppid, a bpf(BPF_MAP_LOOKUP_ELEM) the tracer does not record,
// and a bpf(BPF_MAP_CREATE) of a ring buffer with its token, which the
// kernel refuses and the tracer records in full (token resolved, attr
// copied, reason computed when read); once without the tracer and once
// with each of its two hooks, interleaved -rounds times, while a reader
// drains the ring buffer. Medians, deltas and ratios are printed, and the
// events the ring buffer dropped. Run as root:
//
//	go run ./bench/audit [-n 50000] [-rounds 5] [-concurrent]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/audit"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/token"
)

const workloadEnv = "BPFGATE_BENCH_AUDIT_N"

// The calls timed, in order.
var kinds = []string{"getppid", "bpf(MAP_LOOKUP_ELEM)", "bpf(MAP_CREATE) recorded"}

func main() {
	launch.Init()
	if n := os.Getenv(workloadEnv); n != "" {
		calls, _ := strconv.Atoi(n)
		res, err := workload(calls, 3)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	n := flag.Int("n", 50000, "calls per loop (each recorded call fills 296 bytes of a 64 MiB ring)")
	rounds := flag.Int("rounds", 5, "runs of each workload, interleaved")
	concurrent := flag.Bool("concurrent", false, "read the events while the workload runs (else after it, as the ring buffer holds them)")
	flag.Parse()
	names, err := delegate.KernelNames()
	if err != nil {
		fail(err)
	}
	set, err := names.SetFlags("map_create", "array", "", "")
	if err != nil {
		fail(err)
	}
	modes := []audit.Hook{-1, audit.HookTracepoint, audit.HookRawTracepoint}
	got := map[audit.Hook]map[string][]float64{}
	events := map[audit.Hook]int{}
	dropped := map[audit.Hook]uint64{}
	for range *rounds {
		for _, h := range modes {
			res, ev, dr, err := measure(set, h, *n, *concurrent)
			if err != nil {
				fail(err)
			}
			if got[h] == nil {
				got[h] = map[string][]float64{}
			}
			for k, v := range res {
				got[h][k] = append(got[h][k], v)
			}
			events[h] += ev
			dropped[h] += dr
		}
	}
	when := "after the workload"
	if *concurrent {
		when = "while the workload runs"
	}
	fmt.Printf("%d calls per loop, median of %d sandboxes each, %d CPUs, events read %s\n", *n, *rounds, runtime.NumCPU(), when)
	fmt.Printf("%-26s %9s %12s %9s %12s %9s\n", "call", "off ns", "tracepoint", "delta", "tp_btf", "delta")
	for _, k := range kinds {
		off := median(got[-1][k])
		tp, bt := median(got[audit.HookTracepoint][k]), median(got[audit.HookRawTracepoint][k])
		fmt.Printf("%-26s %9.1f %12.1f %+9.1f %12.1f %+9.1f\n", k, off, tp, tp-off, bt, bt-off)
	}
	for _, h := range modes[1:] {
		fmt.Printf("%s: %d events read, %d dropped\n", h, events[h], dropped[h])
	}
}

// measure runs the workload once, with the tracer on hook h (none if h is
// -1) and a reader draining it.
func measure(set delegate.Set, h audit.Hook, n int, concurrent bool) (map[string]float64, int, uint64, error) {
	var tr *audit.Tracer
	read := make(chan int, 1)
	var startReader func()
	if h >= 0 {
		var err error
		if tr, err = audit.Open(audit.Options{Hook: h, RingSize: 64 << 20}); err != nil {
			return nil, 0, 0, err
		}
		defer tr.Close()
		reader := func() {
			c := 0
			for {
				if _, err := tr.Read(); err != nil {
					read <- c
					return
				}
				c++
			}
		}
		if concurrent {
			go reader()
		} else {
			startReader = reader
		}
	}
	var stdout, stderr bytes.Buffer
	w, err := launch.Start(launch.Config{Args: []string{"/proc/self/exe"},
		Env:        append(os.Environ(), workloadEnv+"="+strconv.Itoa(n)),
		Delegation: set, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, 0, 0, err
	}
	code, err := w.Wait()
	if err != nil || code != 0 {
		return nil, 0, 0, fmt.Errorf("workload: exit %d, %v: %s", code, err, stderr.String())
	}
	var res map[string]float64
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, 0, 0, err
	}
	if tr == nil {
		return res, 0, 0, nil
	}
	tr.Flush()
	if startReader != nil {
		go startReader()
	}
	events := <-read
	dropped, err := tr.Dropped()
	return res, events, dropped, err
}

// workload times each kind of call, n calls a loop, the median of rounds.
func workload(n, rounds int) (map[string]float64, error) {
	tok, err := token.Create("/sys/fs/bpf")
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	create := func(typ uint32) (int, error) {
		a := sys.MapCreateAttr{MapType: typ, KeySize: 4, ValueSize: 8, MaxEntries: 1,
			MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok.FD())}
		if typ == 27 { // ringbuf
			a.KeySize, a.ValueSize, a.MaxEntries = 0, 0, 4096
		}
		return sys.MapCreate(&a)
	}
	arr, err := create(2)
	if err != nil {
		return nil, fmt.Errorf("array map: %w", err)
	}
	defer unix.Close(arr)
	if _, err := create(27); !errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("ring buffer: %v, want EPERM", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	key, value := uint32(0), uint64(0)
	lookup := struct {
		fd         uint32
		_          uint32
		key, value uint64
		flags      uint64
	}{fd: uint32(arr), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&value)))}
	ring := sys.MapCreateAttr{MapType: 27, MaxEntries: 4096, MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok.FD())}
	calls := map[string]func(){
		kinds[0]: func() { syscall.RawSyscall(unix.SYS_GETPPID, 0, 0, 0) },
		kinds[1]: func() {
			syscall.RawSyscall(unix.SYS_BPF, 1, uintptr(unsafe.Pointer(&lookup)), unsafe.Sizeof(lookup))
		},
		kinds[2]: func() {
			syscall.RawSyscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&ring)), unsafe.Sizeof(ring))
		},
	}
	out := map[string]float64{}
	for _, k := range kinds {
		call := calls[k]
		var ds []float64
		for range max(rounds, 1) {
			start := time.Now()
			for range n {
				call()
			}
			ds = append(ds, float64(time.Since(start).Nanoseconds())/float64(n))
		}
		out[k] = median(ds)
	}
	runtime.KeepAlive(&key)
	runtime.KeepAlive(&value)
	return out, nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "audit bench:", err)
	os.Exit(1)
}
