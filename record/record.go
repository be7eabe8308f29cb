package record

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/sys"
)

// MaxDistinct bounds how many distinct Calls a Record keeps: a workload
// that makes up types by the million is counted in Overflow instead.
const MaxDistinct = 1024

// Record is what a workload's recorded bpf() calls used.
type Record struct {
	// Calls counts each distinct call.
	Calls map[Call]uint64
	// Notified counts every notification answered.
	Notified uint64
	// Unreadable counts calls whose bpf_attr could not be read (a bad
	// pointer): the kernel fails those calls too (EFAULT).
	Unreadable uint64
	// Gone counts calls whose task died or gave up before the record
	// could be trusted (the pid may have been reused).
	Gone uint64
	// Foreign counts notifications that were not bpf() of this
	// architecture (a listener this package did not make).
	Foreign uint64
	// Overflow counts calls beyond MaxDistinct distinct ones.
	Overflow uint64
}

func newRecord() *Record { return &Record{Calls: map[Call]uint64{}} }

func (r *Record) add(c Call) {
	if _, ok := r.Calls[c]; !ok && len(r.Calls) >= MaxDistinct {
		r.Overflow++
		return
	}
	r.Calls[c]++
}

// Sorted returns the distinct calls in a fixed order: by command, token,
// type and attach type.
func (r *Record) Sorted() []Call {
	out := make([]Call, 0, len(r.Calls))
	for c := range r.Calls {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Call) int {
		return cmp.Or(cmp.Compare(a.Cmd, b.Cmd), boolCmp(a.Token, b.Token), cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Attach, b.Attach), boolCmp(a.HasType, b.HasType), boolCmp(a.HasAttach, b.HasAttach))
	})
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// pollInterval is how often Serve looks at its context while no call waits.
const pollInterval = 50 * time.Millisecond

// ErrListener means the listener failed in a way that ends the record.
var ErrListener = errors.New("seccomp listener")

// Serve answers the notifications of listener, a seccomp listener made by
// launch (Workload.BPFListener), until every task of the workload is gone
// or ctx is done, and returns what the calls used. Every call continues
// unchanged. Serve does not close listener; once it is closed, calls
// nobody answers fail with ENOSYS.
func Serve(ctx context.Context, listener *os.File) (*Record, error) {
	rec := newRecord()
	raw, err := listener.SyscallConn()
	if err != nil {
		return rec, fmt.Errorf("%w: %w", ErrListener, err)
	}
	var fd int
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return rec, fmt.Errorf("%w: %w", ErrListener, err)
	}
	sizes, err := sys.NotifSizes()
	if err != nil {
		return rec, fmt.Errorf("%w: seccomp notification sizes: %w", ErrListener, err)
	}
	// A newer kernel's struct may be larger than ours; the buffer is
	// uint64s so that the struct is aligned.
	words := (max(int(sizes.Notif), int(unsafe.Sizeof(sys.SeccompNotif{}))) + 7) / 8
	buf := make([]uint64, words)
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), words*8)
	// Each answer is a round trip between the workload's thread and this
	// one: keep it on one OS thread, and ask the kernel to hand the CPU
	// over directly (6.6+; without it a call costs several µs more).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = sys.NotifSetFlags(fd, sys.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	s := server{fd: fd, rec: rec}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		n, err := unix.Poll(pfd, int(pollInterval/time.Millisecond))
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return rec, fmt.Errorf("%w: poll: %w", ErrListener, err)
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			return rec, nil // POLLHUP: every task of the filter is gone
		}
		clear(buf)
		switch err := sys.NotifRecv(fd, bytes); err {
		case nil:
		case unix.ENOENT, unix.EINTR:
			continue // the task died between poll and receive
		default:
			return rec, fmt.Errorf("%w: receive: %w", ErrListener, err)
		}
		if err := s.answer((*sys.SeccompNotif)(unsafe.Pointer(&buf[0]))); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

type server struct {
	fd   int
	rec  *Record
	attr [AttrSize]byte
}

// testHookRead runs after a call's attr was read and before the record
// checks that the call still waits (tests kill the caller there).
var testHookRead func(pid uint32)

func (s *server) answer(n *sys.SeccompNotif) error {
	s.rec.Notified++
	if n.Data.Nr != unix.SYS_BPF || n.Data.Arch != nativeArch {
		s.rec.Foreign++
	} else {
		call, readErr := s.read(n)
		if testHookRead != nil {
			testHookRead(n.Pid)
		}
		switch {
		case sys.NotifIDValid(s.fd, n.ID) != nil:
			s.rec.Gone++
		case readErr != nil:
			s.rec.Unreadable++
		default:
			s.rec.add(call)
		}
	}
	resp := sys.SeccompNotifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	switch err := sys.NotifSend(s.fd, &resp); err {
	case nil, unix.ENOENT: // ENOENT: the task is gone, nobody to answer
		return nil
	default:
		return fmt.Errorf("%w: answer: %w", ErrListener, err)
	}
}

// read reads at most AttrSize bytes of the call's bpf_attr, fewer when the
// size argument says so, and decodes them.
func (s *server) read(n *sys.SeccompNotif) (Call, error) {
	cmd := uint32(n.Data.Args[0]) // the kernel takes an int
	size := min(uint64(uint32(n.Data.Args[2])), AttrSize)
	ptr := n.Data.Args[1]
	clear(s.attr[:])
	if size == 0 {
		return Decode(cmd, nil), nil
	}
	if n.Pid == 0 || ptr == 0 {
		return Call{}, unix.EFAULT
	}
	got, err := sys.ReadMem(int(n.Pid), ptr, s.attr[:size])
	if err != nil {
		return Call{}, err
	}
	if uint64(got) != size {
		return Call{}, unix.EFAULT // part of it is not mapped: the kernel fails the call
	}
	return Decode(cmd, s.attr[:size]), nil
}
