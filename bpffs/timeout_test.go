package bpffs_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
)

// TestServeDelegationTimesOut: a workload side that never answers (hung,
// or stopped) cannot hold the privileged side: it gives up after
// HandshakeTimeout with ErrTimeout. The OCI hook relies on this bound.
func TestServeDelegationTimesOut(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1]) // the silent peer stays open
	old := bpffs.HandshakeTimeout
	bpffs.HandshakeTimeout = 50 * time.Millisecond
	defer func() { bpffs.HandshakeTimeout = old }()
	err = onFile(t, fds[0], func(f *os.File) error { return bpffs.ServeDelegation(f, bpffs.Options{}) })
	if !errors.Is(err, bpffs.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
}

// TestServeDelegationContextDeadline: a caller's deadline bounds the waits
// without touching the package-wide default.
func TestServeDelegationContextDeadline(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = onFile(t, fds[0], func(f *os.File) error { return bpffs.ServeDelegationContext(ctx, f, bpffs.Options{}, nil) })
	if !errors.Is(err, bpffs.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v: the context's deadline was not used (HandshakeTimeout is %v)", took, bpffs.HandshakeTimeout)
	}
}

// onFile runs fn with an *os.File of its own for fd (a dup, closed when fn
// returns), as ServeDelegation takes one: the test goes on closing fd itself.
func onFile(t *testing.T, fd int, fn func(*os.File) error) error {
	t.Helper()
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "handshake")
	defer f.Close()
	return fn(f)
}
