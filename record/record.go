package record

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync"
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

func (r *Record) clone() *Record {
	c := *r
	c.Calls = maps.Clone(r.Calls)
	return &c
}

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

// ErrListener means the listener failed in a way that ends the record.
var ErrListener = errors.New("seccomp listener")

// Serve answers the notifications of listener, a seccomp listener made by
// launch (Workload.BPFListener), until every task of the workload is gone,
// and returns what the calls used. Every call continues unchanged.
//
// When ctx is done first, Serve returns what was recorded so far at once;
// the calls that follow are still answered (they continue), until the
// workload is gone. Serve does not close listener; the listener is
// released when the last task of the workload is gone even if the caller
// closed it.
func Serve(ctx context.Context, listener *os.File) (*Record, error) {
	raw, err := listener.SyscallConn()
	if err != nil {
		return newRecord(), fmt.Errorf("%w: %w", ErrListener, err)
	}
	sizes, err := sys.NotifSizes()
	if err != nil {
		return newRecord(), fmt.Errorf("%w: seccomp notification sizes: %w", ErrListener, err)
	}
	s := &server{rec: newRecord()}
	done := make(chan error, 1)
	go func() {
		var serr error
		// Control keeps the fd open (and its number ours) while the
		// loop runs, even if the caller closes listener meanwhile.
		cerr := raw.Control(func(fd uintptr) { serr = s.loop(int(fd), sizes) })
		done <- cmp.Or(cerr, serr)
	}()
	select {
	case err := <-done:
		return s.rec, err
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.rec.clone(), nil
	}
}

// loop answers notifications until the listener hangs up.
func (s *server) loop(fd int, sizes sys.SeccompNotifSizes) error {
	// A newer kernel's struct may be larger than ours; the buffer is
	// uint64s so that the struct is aligned.
	words := (max(int(sizes.Notif), int(unsafe.Sizeof(sys.SeccompNotif{}))) + 7) / 8
	buf := make([]uint64, words)
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), words*8)
	// Each answer is a round trip between the workload's thread and this
	// one: keep it on one OS thread, wait in the receive itself (a poll
	// first costs a further wake-up, about 0.7 µs a call here), and ask
	// the kernel to hand the CPU over directly (6.6+; without it a call
	// costs several µs more).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = sys.NotifSetFlags(fd, sys.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	for {
		clear(buf)
		// One round: receive, read the attr, check the call still
		// waits, note it, let it continue. The note comes before the
		// answer: once answered, the workload may act on the call's
		// result, and a snapshot taken then must hold it.
		r := sys.NotifRecvRead(fd, bytes, unix.SYS_BPF, nativeArch, s.attr[:])
		switch r.Recv {
		case nil:
		case unix.EINTR:
			continue
		case unix.ENOENT:
			// The caller died before its call was received, or every
			// task of the filter is gone: then the listener hangs up
			// and every receive fails at once.
			if hungUp(fd) {
				return nil
			}
			continue
		default:
			return fmt.Errorf("%w: receive: %w", ErrListener, r.Recv)
		}
		n := (*sys.SeccompNotif)(unsafe.Pointer(&buf[0]))
		if testHookRead != nil && !r.Foreign {
			testHookRead(n.Pid)
		}
		r.Valid = sys.NotifIDValid(fd, n.ID)
		s.note(n, r)
		r.Send = sys.NotifSend(fd, &sys.SeccompNotifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE})
		switch r.Send {
		case nil, unix.ENOENT: // ENOENT: the task is gone, nobody to answer
		default:
			return fmt.Errorf("%w: answer: %w", ErrListener, r.Send)
		}
	}
}

// hungUp reports whether every task of the listener's filter is gone.
func hungUp(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}
}

type server struct {
	mu   sync.Mutex // guards rec against a snapshot taken when ctx is done
	rec  *Record
	attr [AttrSize]byte
}

// testHookRead runs after a call's attr was read and before the record
// checks that the call still waits (tests kill the caller there).
var testHookRead func(pid uint32)

// note records one answered notification.
func (s *server) note(n *sys.SeccompNotif, r sys.NotifRound) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rec.Notified++
	switch {
	case r.Foreign:
		s.rec.Foreign++
	case r.Valid != nil:
		s.rec.Gone++
	case r.Read != nil:
		s.rec.Unreadable++ // the kernel fails the call too (EFAULT)
	default:
		// The kernel takes the command as an int.
		s.rec.add(Decode(uint32(n.Data.Args[0]), s.attr[:r.Size]))
	}
}
