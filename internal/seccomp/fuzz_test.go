package seccomp

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzFilter: any bytes either fail to decode or give a filter that runs
// to a return for any system call, quickly, and encodes back to the same
// bytes.
func FuzzFilter(f *testing.F) {
	f.Add(mustEncode(denyBPF(1)), int32(nrBPFx86_64), uint64(0))
	f.Add([]byte{0x15, 0, 0xff, 0xff, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0xff, 0x7f}, int32(0), uint64(1))
	f.Fuzz(func(t *testing.T, raw []byte, nr int32, arg uint64) {
		flt, err := DecodeFilter(raw)
		if err != nil {
			return
		}
		start := time.Now()
		flt.Run(&Data{Nr: nr, Arch: auditArchX8664, Args: [6]uint64{arg, arg >> 3}})
		if d := time.Since(start); d > time.Second {
			t.Errorf("%d instructions ran for %v", flt.Len(), d)
		}
		if !bytes.Equal(flt.Encode(), raw) {
			t.Error("encode does not give back the decoded bytes")
		}
		_, _ = EvalBPF([]*Filter{flt})
	})
}

func mustEncode(prog []unix.SockFilter) []byte {
	f, err := NewFilter(prog)
	if err != nil {
		panic(err)
	}
	return f.Encode()
}
