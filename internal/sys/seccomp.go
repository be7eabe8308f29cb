package sys

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SeccompData is struct seccomp_data: the system call a filter sees.
type SeccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// SeccompNotif is struct seccomp_notif: one call waiting for an answer.
type SeccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  SeccompData
}

// SeccompNotifResp is struct seccomp_notif_resp: the answer.
type SeccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// SeccompNotifSizes is struct seccomp_notif_sizes: the sizes of the
// structures above as the running kernel has them.
type SeccompNotifSizes struct {
	Notif     uint16
	NotifResp uint16
	Data      uint16
}

// NotifSizes asks the kernel how large its notification structures are;
// a newer kernel's may be larger than this package's.
func NotifSizes() (SeccompNotifSizes, error) {
	var s SeccompNotifSizes
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&s)))
	if errno != 0 {
		return s, errno
	}
	return s, nil
}

// NotifRecv receives one notification into buf, which must be zeroed and at
// least as large as the kernel's struct seccomp_notif (NotifSizes). It
// blocks until a call waits, every task of the filter is gone (ENOENT), or
// a signal arrives (EINTR).
func NotifRecv(fd int, buf []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// NotifIDValid reports (nil) whether notification id still waits for an
// answer: the calling task neither died nor gave up, so its pid is still
// its own and what was read from its memory belongs to it.
func NotifIDValid(fd int, id uint64) error {
	// Never blocks: a raw call spares the scheduler's bookkeeping, which
	// is a fair part of a notification's cost.
	_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_ID_VALID, uintptr(unsafe.Pointer(&id)))
	if errno != 0 {
		return errno
	}
	return nil
}

// NotifSend answers a notification.
func NotifSend(fd int, resp *SeccompNotifResp) error {
	_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(resp)))
	if errno != 0 {
		return errno
	}
	return nil
}

// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6+): the kernel wakes the
// listener and the caller as a pair, on one CPU, rather than through the
// scheduler's usual wake-up.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1

// NotifSetFlags sets flags of a listener (SECCOMP_IOCTL_NOTIF_SET_FLAGS).
func NotifSetFlags(fd int, flags uint64) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, uintptr(flags))
	if errno != 0 {
		return errno
	}
	return nil
}

// ReadMem reads len(buf) bytes at addr of process pid (process_vm_readv)
// and returns how many were read. It may wait for the target's page faults
// (a file mapping, say), so it is not a raw call.
func ReadMem(pid int, addr uint64, buf []byte) (int, error) {
	local := unix.Iovec{Base: &buf[0]}
	local.SetLen(len(buf))
	remote := unix.RemoteIovec{Base: uintptr(addr), Len: len(buf)}
	n, _, errno := unix.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(pid), uintptr(unsafe.Pointer(&local)), 1,
		uintptr(unsafe.Pointer(&remote)), 1, 0)
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}

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
