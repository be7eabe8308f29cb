package bpffs

import (
	"errors"
	"os"
	"time"

	"github.com/bpfgate/bpfgate/launch/nsexec"
)

// ErrNoOwnerCheck means this binary was built without cgo, so it has no
// helper that can join a user namespace to ask the kernel.
var ErrNoOwnerCheck = errors.New("this bpfgate was built without cgo: it cannot ask the kernel who owns a bpffs")

// CheckOwner asks the kernel whether a process of user namespace userns (an
// fd of /proc/PID/ns/user) with CAP_BPF there can create a BPF token from
// the bpffs mnt (an fd of its root, O_PATH will do): the helper ServeDelegation
// uses, bounded by timeout. It returns nil when it can (a bpffs that
// delegates nothing counts: the kernel then says ENOENT, not EPERM), an
// error wrapping ErrWrongOwner when another user namespace owns the bpffs.
func CheckOwner(mnt, userns *os.File, timeout time.Duration) error {
	if !nsexec.Available {
		return ErrNoOwnerCheck
	}
	return checkOwner(int(mnt.Fd()), userns, time.Now().Add(timeout))
}
