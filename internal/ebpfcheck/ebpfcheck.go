// Package ebpfcheck is what the end-to-end tests run as a workload: it uses
// cilium/ebpf, unmodified, the way any program would, so that it finds a
// token by itself, and reports what worked.
package ebpfcheck

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/token"
)

// Classify names an outcome: "ok", "EPERM", or the error.
func Classify(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, unix.EPERM):
		return "EPERM"
	}
	return err.Error()
}

// Run creates a few maps and loads a few programs and returns the outcome
// of each, keyed "map/TYPE" and "prog/TYPE".
func Run() map[string]string {
	res := map[string]string{}
	maps := map[string]*ebpf.MapSpec{
		"hash":     {Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		"array":    {Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		"lru_hash": {Type: ebpf.LRUHash, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		"ringbuf":  {Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())},
	}
	for name, spec := range maps {
		m, err := ebpf.NewMap(spec)
		res["map/"+name] = Classify(err)
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
		res["prog/"+name] = Classify(err)
		if err == nil {
			p.Close()
		}
	}
	return res
}

// RunAudited makes exactly two bpf() map creations with a token of the
// bpffs at path, and nothing else a tracer of bpf() would see: a hash map
// and a ring buffer, for the audit tests. It returns their outcomes, keyed
// as Run's.
func RunAudited(path string) map[string]string {
	res := map[string]string{}
	tok, err := token.Create(path)
	if err != nil {
		res["token"] = err.Error()
		return res
	}
	defer tok.Close()
	for _, m := range []struct {
		name            string
		typ, key, value uint32
	}{{"hash", uint32(ebpf.Hash), 4, 4}, {"ringbuf", uint32(ebpf.RingBuf), 0, 0}} {
		a := sys.MapCreateAttr{MapType: m.typ, KeySize: m.key, ValueSize: m.value, MaxEntries: 4096,
			MapFlags: sys.BPF_F_TOKEN_FD, MapTokenFd: int32(tok.FD())}
		fd, err := sys.MapCreate(&a)
		if fd > 0 {
			unix.Close(fd)
		}
		res["map/"+m.name] = Classify(err)
	}
	return res
}
