// Package recordbench measures, inside a workload, what recording its bpf()
// calls (package record) costs its system calls: bench/record and record's
// benchmark run these loops in a sandbox with and without the recorder.
package recordbench

import (
	"fmt"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The calls measured.
const (
	// Getppid stands for every system call that is not bpf().
	Getppid = "getppid"
	// Lookup is bpf(BPF_MAP_LOOKUP_ELEM), which the recorder's filter
	// lets through.
	Lookup = "bpf(BPF_MAP_LOOKUP_ELEM)"
	// Notified is bpf(BPF_MAP_CREATE) of an invalid map type, which fails
	// at once and is notified when recorded.
	Notified = "bpf(BPF_MAP_CREATE) EINVAL"
)

// Kinds lists the calls in the order they are printed.
var Kinds = []string{Getppid, Lookup, Notified}

// Calls makes n calls of kind and returns the nanoseconds per call. mapFD
// is an array map with a 4-byte key (for Lookup).
func Calls(kind string, mapFD, n int) (float64, error) {
	var key uint32
	var value [8]byte
	// union bpf_attr of BPF_MAP_LOOKUP_ELEM: map_fd, key, value, flags.
	lookup := struct {
		fd    uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}{fd: uint32(mapFD), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&value[0])))}
	var create [72]byte // map_type 0 is BPF_MAP_TYPE_UNSPEC: EINVAL
	var trap, a0, a1, a2 uintptr
	switch kind {
	case Getppid:
		trap = unix.SYS_GETPPID
	case Lookup:
		trap, a0, a1, a2 = unix.SYS_BPF, 1, uintptr(unsafe.Pointer(&lookup)), unsafe.Sizeof(lookup)
	case Notified:
		trap, a0, a1, a2 = unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&create[0])), uintptr(len(create))
	default:
		return 0, fmt.Errorf("unknown call %q", kind)
	}
	_, _, e := unix.Syscall(trap, a0, a1, a2)
	if kind == Notified && e != unix.EINVAL || kind != Notified && e != 0 {
		return 0, fmt.Errorf("%s: %v", kind, e)
	}
	start := time.Now()
	for range n {
		unix.Syscall(trap, a0, a1, a2)
	}
	d := time.Since(start)
	runtime.KeepAlive(&lookup)
	runtime.KeepAlive(&create)
	runtime.KeepAlive(&key)
	runtime.KeepAlive(&value)
	return float64(d.Nanoseconds()) / float64(max(n, 1)), nil
}

// Workload makes an array map (with the token cilium/ebpf finds) and
// measures every kind: the median of rounds loops of n calls each.
func Workload(n, rounds int) (map[string]float64, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("array map: %w", err)
	}
	defer m.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out := map[string]float64{}
	for _, kind := range Kinds {
		var ds []float64
		for range max(rounds, 1) {
			d, err := Calls(kind, m.FD(), n)
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
		slices.Sort(ds)
		out[kind] = ds[len(ds)/2]
	}
	return out, nil
}
