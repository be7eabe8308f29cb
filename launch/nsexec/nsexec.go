//go:build cgo && linux

package nsexec

// #cgo CFLAGS: -Wall -O2
// extern unsigned long long bpfgate_inherited_fds;
import "C"

// Available reports whether the C helpers are linked in.
const Available = true

// InheritedFD reports whether fd was open when this process was executed,
// before the Go runtime started: one the caller passed on, not one of the
// runtime's or bpfgate's own. Only fds 3 to 66 are recorded.
func InheritedFD(fd int) bool {
	if fd < 3 || fd >= 3+64 {
		return false
	}
	return uint64(C.bpfgate_inherited_fds)&(1<<(fd-3)) != 0
}
