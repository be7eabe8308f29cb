package audit

import (
	"testing"
	"unsafe"

	"github.com/bpfgate/bpfgate/delegate"
)

// FuzzDecode: the attr, comm and name bytes of a record come from the
// traced process's memory, and the rest from the kernel; no record makes
// decode panic, and an event always has an outcome.
func FuzzDecode(f *testing.F) {
	var seed tracerEvent
	seed.Cmd, seed.Ret, seed.TokenFd, seed.AttrLen, seed.Flags = cmdProgLoad, -1, 4, 160, evToken|evObject
	f.Add(unsafe.Slice((*byte)(unsafe.Pointer(&seed)), unsafe.Sizeof(seed)))
	f.Add([]byte{})
	names := delegate.BuiltinNames()
	f.Fuzz(func(t *testing.T, data []byte) {
		var r tracerEvent
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r)), data)
		e := newDecoder(names).decode(&r)
		if e.Outcome == "" || e.Cmd == "" || (e.Ret < 0) == (e.Errno == "") {
			t.Fatalf("%+v", e)
		}
	})
}
