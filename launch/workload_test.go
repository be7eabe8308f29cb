package launch_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/token"
)

// workloadEnv makes the test binary act as a workload instead of running
// tests; launch.Start executes it through /proc/self/exe.
const workloadEnv = "BPFGATE_TEST_WORKLOAD"

// runWorkload is what the test binary does as a workload. It reports on
// stdout as JSON and exits.
func runWorkload(kind string) int {
	var out any
	switch kind {
	case "cilium":
		out = ciliumChecks()
	case "wait-cilium": // started outside bpfgate: wait for the mount first
		io.ReadFull(os.Stdin, make([]byte, 1))
		out = ciliumChecks()
	case "token-from":
		t, err := token.Create(os.Getenv("BPFGATE_TEST_PATH"))
		res := map[string]string{"result": "ok"}
		if err != nil {
			res["result"] = classify(err)
			res["error"] = err.Error()
		} else {
			t.Close()
		}
		out = res
	case "identity":
		status, _ := os.ReadFile("/proc/self/status")
		uidMap, _ := os.ReadFile("/proc/self/uid_map")
		res := map[string]string{"uid_map": strings.Join(strings.Fields(string(uidMap)), " ")}
		for _, line := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "CapEff" || k == "CapBnd" || k == "Uid") {
				res[k] = strings.TrimSpace(v)
			}
		}
		out = res
	default:
		fmt.Fprintln(os.Stderr, "unknown workload", kind)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

func classify(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, unix.EPERM):
		return "EPERM"
	}
	return err.Error()
}

// ciliumChecks uses cilium/ebpf, unmodified, the way any workload would: it
// finds the token by itself.
func ciliumChecks() map[string]string {
	res := map[string]string{}
	maps := map[string]*ebpf.MapSpec{
		"hash":     {Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		"array":    {Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		"lru_hash": {Type: ebpf.LRUHash, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		"ringbuf":  {Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())},
	}
	for name, spec := range maps {
		m, err := ebpf.NewMap(spec)
		res["map/"+name] = classify(err)
		if err == nil {
			m.Close()
		}
	}
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	progs := map[string]*ebpf.ProgramSpec{
		"socket_filter": {Type: ebpf.SocketFilter, Instructions: insns, License: "GPL"},
		"xdp":           {Type: ebpf.XDP, AttachType: ebpf.AttachXDP, Instructions: insns, License: "GPL"},
		"kprobe":        {Type: ebpf.Kprobe, Instructions: insns, License: "GPL"},
	}
	for name, spec := range progs {
		p, err := ebpf.NewProgram(spec)
		res["prog/"+name] = classify(err)
		if err == nil {
			p.Close()
		}
	}
	return res
}
