package sys

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PtraceSeccompGetFilter copies the index'th seccomp filter of the stopped
// tracee pid into buf and returns its length in instructions. With an empty
// buf it only returns the length. Index 0 is the filter installed first.
// The calling thread must be the tracer.
func PtraceSeccompGetFilter(pid int, index uint, buf []unix.SockFilter) (int, error) {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	r, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), uintptr(index), uintptr(p), 0, 0)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
