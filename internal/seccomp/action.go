package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Action is what a seccomp filter returns: an action in the top 16 bits
// (SECCOMP_RET_ACTION_FULL) and its data (an errno, say) in the low 16.
type Action uint32

// The actions, from the most to the least restrictive.
const (
	KillProcess Action = unix.SECCOMP_RET_KILL_PROCESS
	KillThread  Action = unix.SECCOMP_RET_KILL_THREAD
	Trap        Action = unix.SECCOMP_RET_TRAP
	Errno       Action = unix.SECCOMP_RET_ERRNO
	UserNotif   Action = unix.SECCOMP_RET_USER_NOTIF
	Trace       Action = unix.SECCOMP_RET_TRACE
	Log         Action = unix.SECCOMP_RET_LOG
	Allow       Action = unix.SECCOMP_RET_ALLOW
)

// Kind returns the action without its data.
func (a Action) Kind() Action { return a & unix.SECCOMP_RET_ACTION_FULL }

// Data returns the action's data: the errno of Errno.
func (a Action) Data() uint16 { return uint16(a & unix.SECCOMP_RET_DATA) }

// precedence orders actions as the kernel's seccomp_run_filters does: a
// signed comparison of the action bits, the lowest wins.
func (a Action) precedence() int32 { return int32(a.Kind()) }

// Stricter reports whether the kernel would take a over b when two filters
// disagree about one system call.
func (a Action) Stricter(b Action) bool { return a.precedence() < b.precedence() }

// Combine returns what the kernel does when several filters each return an
// action for one system call. results are in the order the filters were
// installed; the kernel runs the newest first and keeps the first of the
// strictest actions (so its errno, for instance). No filters allow.
func Combine(results []Action) Action {
	ret := Allow
	for i := len(results) - 1; i >= 0; i-- {
		if results[i].Stricter(ret) {
			ret = results[i]
		}
	}
	return ret
}

// Allows reports whether the system call reaches the kernel: Allow, or Log
// (allowed and logged).
func (a Action) Allows() bool { return a.Kind() == Allow || a.Kind() == Log }

// String says what the action does to the call.
func (a Action) String() string {
	switch a.Kind() {
	case KillProcess:
		return "kill the process"
	case KillThread:
		return "kill the thread"
	case Trap:
		return "SIGSYS (trap)"
	case Errno:
		e := unix.Errno(a.Data())
		if name := unix.ErrnoName(e); name != "" {
			return fmt.Sprintf("fail with %s (%v)", name, e)
		}
		return fmt.Sprintf("fail with errno %d", a.Data())
	case UserNotif:
		return "ask a supervisor (user notification; ENOSYS without one)"
	case Trace:
		return "ask a tracer (ENOSYS without one)"
	case Log:
		return "allow, and log"
	case Allow:
		return "allow"
	}
	// The kernel treats actions it does not know as SECCOMP_RET_KILL_PROCESS.
	return fmt.Sprintf("kill the process (unknown action %#x)", uint32(a))
}
