package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/sys"
)

// MaxFilters bounds how many filters ReadFilters takes from one process.
// The kernel caps the instructions of all of them at 32768, counting 4 per
// filter on top of its length.
const MaxFilters = 8192

var (
	// ErrTimeout means the process did not stop within the time given.
	ErrTimeout = errors.New("the process did not stop for ptrace in time")
	// ErrNotFiltered means the process has no seccomp filter to read.
	ErrNotFiltered = errors.New("the process is not in seccomp filter mode")
)

// Target is a process held so that its pid cannot be reused unnoticed:
// a *launch.Process.
type Target interface {
	Pid() int
	// Alive fails once the pid no longer names the process held.
	Alive() error
}

// ReadFilters takes the seccomp filters of t's main thread, in the order
// they were installed, with PTRACE_SEIZE, PTRACE_INTERRUPT and
// PTRACE_SECCOMP_GET_FILTER. It needs CAP_SYS_ADMIN and must not run under
// seccomp itself.
//
// The process cannot hold bpfgate up: the wait for it to stop is bounded by
// timeout, at most MaxFilters filters of MaxInsns instructions are read,
// and the tracing is done on an OS thread of its own (never the main one)
// that exits afterwards, which detaches the process in every case (the
// kernel detaches a tracer's tracees when the tracer thread exits, even one
// that never stopped). A signal that arrives meanwhile is passed on when
// detaching.
func ReadFilters(t Target, timeout time.Duration) ([]*Filter, error) {
	var (
		filters []*Filter
		err     error
	)
	onOwnThread(func() { filters, err = readFilters(t, timeout) })
	return filters, err
}

// onOwnThread runs f on an OS thread that exits when f returns, taking its
// tracees' ptrace links with it. The main thread cannot exit (the runtime
// parks it instead), so f never runs there: a goroutine that finds itself on
// it holds it while another one does the work.
func onOwnThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			onOwnThread(f)
			runtime.UnlockOSThread()
			return
		}
		f()
		// Never unlocked: the thread ends with this goroutine.
	}()
	<-done
}

func readFilters(t Target, timeout time.Duration) ([]*Filter, error) {
	pid := t.Pid()
	if err := unix.PtraceSeize(pid); err != nil {
		return nil, fmt.Errorf("pid %d: ptrace seize: %w (is it traced already, or bpfgate itself?)", pid, err)
	}
	// The pid could have been reused between the caller's pidfd_open and
	// the seize: then the process held is gone.
	if err := t.Alive(); err != nil {
		return nil, err
	}
	if err := unix.PtraceInterrupt(pid); err != nil {
		return nil, fmt.Errorf("pid %d: ptrace interrupt: %w", pid, err)
	}
	sig, err := waitStop(pid, timeout)
	if err != nil {
		return nil, err
	}
	filters, ferr := getFilters(pid)
	// Detach while stopped, handing on a signal the stop caught.
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, uintptr(sig), 0, 0)
	if ferr != nil {
		return nil, ferr
	}
	if errno != 0 {
		return nil, fmt.Errorf("pid %d: ptrace detach: %w", pid, errno)
	}
	if err := t.Alive(); err != nil {
		return nil, err
	}
	return filters, nil
}

// waitStop polls for the tracee's stop until the deadline. It returns the
// signal of a signal-delivery stop (0 for the interrupt's own stop or a
// group stop), to be delivered on detach.
func waitStop(pid int, timeout time.Duration) (unix.Signal, error) {
	deadline := time.Now().Add(timeout)
	pause := 100 * time.Microsecond
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, fmt.Errorf("pid %d: wait for the ptrace stop: %w", pid, err)
		case got == pid && ws.Stopped():
			// The interrupt's stop and group stops are event stops; any
			// other stop holds a signal on its way to the process.
			if (uint32(ws)>>16)&0xff != 0 {
				return 0, nil
			}
			return ws.StopSignal(), nil
		case got == pid:
			return 0, fmt.Errorf("pid %d: exited while bpfgate looked at its seccomp filters", pid)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("pid %d: %w (%v)", pid, ErrTimeout, timeout)
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

func getFilters(pid int) ([]*Filter, error) {
	var out []*Filter
	for i := uint(0); ; i++ {
		n, err := sys.PtraceSeccompGetFilter(pid, i, nil)
		switch {
		case errors.Is(err, unix.ENOENT):
			return out, nil
		case errors.Is(err, unix.EINVAL) && i == 0:
			return nil, ErrNotFiltered
		case errors.Is(err, unix.EMEDIUMTYPE):
			return nil, fmt.Errorf("pid %d: filter %d has no classic BPF form to read: %w", pid, i, err)
		case errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("pid %d: reading seccomp filters needs CAP_SYS_ADMIN and no seccomp filter on bpfgate itself: %w", pid, err)
		case err != nil:
			return nil, fmt.Errorf("pid %d: read seccomp filter %d: %w", pid, i, err)
		}
		if i >= MaxFilters {
			return nil, fmt.Errorf("pid %d: more than %d seccomp filters", pid, MaxFilters)
		}
		if n <= 0 || n > MaxInsns {
			return nil, fmt.Errorf("pid %d: seccomp filter %d: %d instructions", pid, i, n)
		}
		buf := make([]unix.SockFilter, n)
		m, err := sys.PtraceSeccompGetFilter(pid, i, buf)
		if err != nil {
			return nil, fmt.Errorf("pid %d: read seccomp filter %d: %w", pid, i, err)
		}
		if m != n {
			return nil, fmt.Errorf("pid %d: seccomp filter %d changed length while read", pid, i)
		}
		f, err := NewFilter(buf)
		if err != nil {
			return nil, fmt.Errorf("pid %d: seccomp filter %d: %w", pid, i, err)
		}
		out = append(out, f)
	}
}
