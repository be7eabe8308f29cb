//go:build !386 && !amd64

package audit

import (
	"fmt"
	"runtime"
	"structs"

	"github.com/cilium/ebpf"
)

// The tracer reads x86-64 registers and syscall numbers; elsewhere Open
// fails with ErrUnsupported.

type tracerEvent struct {
	_             structs.HostLayout
	Ktime         uint64
	CgroupId      uint64
	Ret           int64
	TokenAllowed  [4]uint64
	Tgid          uint32
	Tid           uint32
	Uid           uint32
	Userns        uint32
	Cmd           uint32
	AttrLen       uint32
	TokenFd       int32
	TokenUserns   uint32
	TokenDev      uint32
	Flags         uint32
	ObjType       uint32
	ObjAttachType uint32
	ObjId         uint32
	Comm          [16]int8
	Attr          [160]uint8
}

type tracerFilter struct {
	_        structs.HostLayout
	CgroupId uint64
	Tgid     uint32
	Userns   uint32
}

func loadTracer() (*ebpf.CollectionSpec, error) {
	return nil, fmt.Errorf("%w on %s", ErrUnsupported, runtime.GOARCH)
}
