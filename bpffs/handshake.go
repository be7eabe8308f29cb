package bpffs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

// Messages of the delegation handshake (launch/nsexec/protocol.h).
const (
	msgContext = "context" // helper → host, with the fs context fd
	msgReady   = "ready"   // host → helper, with the verified detached mount
	msgMounted = "mounted" // helper → host: attached at the target
	msgError   = "error: " // either way, followed by the reason
)

// Steps of the handshake, as named in errors and in fault injection.
const (
	StepOpen    = "fsopen"    // workload creates the fs context
	StepSend    = "send"      // workload sends it to the host
	StepConfig  = "configure" // host sets delegate_* and creates the superblock
	StepAttach  = "attach"    // workload fsmounts and moves the mount
	StepConfirm = "confirm"   // workload reports success
)

// ErrPeerGone means the other side of the handshake exited or closed its
// socket before finishing.
var ErrPeerGone = errors.New("the other side of the handshake went away")

// ErrTimeout means the other side did not answer in time.
var ErrTimeout = errors.New("the other side of the handshake did not answer in time")

// ErrNotBPFFS means the peer handed over a filesystem context that is not a
// BPF filesystem: the privileged side refuses it and mounts nothing.
var ErrNotBPFFS = errors.New("the peer's filesystem context is not a BPF filesystem")

// ErrWrongOwner means the BPF filesystem the peer handed over is not owned by
// the user namespace it is meant for.
var ErrWrongOwner = errors.New("the BPF filesystem is not owned by the target's user namespace")

// HandshakeTimeout bounds each wait of the host side, unless the context
// given to ServeDelegationContext ends sooner.
var HandshakeTimeout = 10 * time.Second

// waitDeadline is when a wait that starts now must end: HandshakeTimeout
// from now, or ctx's deadline if that comes first.
func waitDeadline(ctx context.Context) time.Time {
	d := time.Now().Add(HandshakeTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// StepError says at which step of the handshake something failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("delegation handshake, step %s: %v", e.Step, e.Err)
}
func (e *StepError) Unwrap() error { return e.Err }

// ServeDelegation is ServeDelegationTo without an expected owner.
func ServeDelegation(sock *os.File, opts Options) error {
	return ServeDelegationTo(sock, opts, nil)
}

// ServeDelegationTo is the privileged half of the handshake. It receives an
// fs context from the helper on sock, configures it with opts (which takes
// CAP_SYS_ADMIN in the initial user namespace), creates the filesystem and
// mounts it (detached), and hands that mount to the helper once it has
// checked it: it must be a BPF filesystem, not owned by the initial user
// namespace (owner, the target's /proc/PID/ns/user, if given, must not be
// the caller's own either). The helper attaches it and confirms. A peer
// that sends anything else gets nothing: the superblock it caused is
// dropped unmounted. Every wait is bounded by HandshakeTimeout; every fd
// received is closed before it returns. sock must be SOCK_SEQPACKET.
func ServeDelegationTo(sock *os.File, opts Options, owner *os.File) error {
	return ServeDelegationContext(context.Background(), sock, opts, owner)
}

// ServeDelegationContext is ServeDelegationTo with every wait bounded by
// ctx's deadline too.
func ServeDelegationContext(ctx context.Context, sockFile *os.File, opts Options, owner *os.File) error {
	sc, err := sockFile.SyscallConn()
	if err != nil {
		return fmt.Errorf("handshake socket: %w", err)
	}
	var serveErr error
	if err := sc.Control(func(fd uintptr) { serveErr = serve(ctx, int(fd), opts, owner) }); err != nil {
		return fmt.Errorf("handshake socket: %w", err)
	}
	return serveErr
}

func serve(ctx context.Context, sock int, opts Options, owner *os.File) error {
	if owner != nil {
		own, err := sys.SameFile(owner, "/proc/self/ns/user")
		if err != nil {
			return &StepError{StepConfig, err}
		}
		if own {
			return &StepError{StepConfig, fmt.Errorf("%w: the target shares the host's user namespace", ErrWrongOwner)}
		}
	}
	msg, fsfd, err := recvTimeout(sock, waitDeadline(ctx))
	if err != nil {
		return &StepError{StepSend, err}
	}
	if fsfd < 0 {
		return &StepError{StepSend, peerError(msg, "no fs context fd came with the message")}
	}
	if string(msg) != msgContext {
		unix.Close(fsfd)
		return &StepError{StepSend, peerError(msg, "unexpected message")}
	}
	mfd, err := createVerified(fsfd, opts)
	unix.Close(fsfd)
	if err == nil && owner != nil {
		if err = checkOwner(mfd, owner, waitDeadline(ctx)); err != nil {
			unix.Close(mfd)
		}
	}
	if err != nil {
		send(sock, msgError+err.Error())
		return &StepError{StepConfig, err}
	}
	err = sys.SendFD(sock, []byte(msgReady), mfd)
	unix.Close(mfd)
	if err != nil {
		return &StepError{StepConfig, fmt.Errorf("hand the mount over: %w", err)}
	}
	msg, fd, err := recvTimeout(sock, waitDeadline(ctx))
	if fd >= 0 {
		unix.Close(fd)
	}
	if err != nil {
		return &StepError{StepAttach, err}
	}
	if string(msg) != msgMounted {
		return &StepError{StepAttach, peerError(msg, "unexpected message")}
	}
	return nil
}

// createVerified configures and creates the filesystem of context fsfd and
// returns a detached mount of it, after checking what the peer really sent.
func createVerified(fsfd int, opts Options) (int, error) {
	// Only a bpffs context may be configured: a peer could send any fd,
	// or the context of a filesystem whose superblock host root must never
	// create (a disk filesystem with a source the peer chose).
	if kind, err := fdKind(fsfd); err != nil || kind != "anon_inode:[fscontext]" {
		return -1, fmt.Errorf("%w: got %q", ErrNotBPFFS, Sanitize(kind))
	}
	if err := checkBPFContext(fsfd); err != nil {
		return -1, err
	}
	if err := Configure(fsfd, opts); err != nil {
		return -1, err
	}
	// The superblock is created here, on the privileged side, so that the
	// kernel checks the delegate_* options with our credentials.
	mfd, err := materialize(fsfd)
	if err != nil {
		return -1, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(mfd, &st); err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("statfs of the new filesystem: %w", err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		unix.Close(mfd)
		return -1, fmt.Errorf("%w (filesystem magic %#x)", ErrNotBPFFS, st.Type)
	}
	if err := checkNotHostOwned(mfd); err != nil {
		unix.Close(mfd)
		return -1, err
	}
	return mfd, nil
}

// checkBPFContext finds out, before anything is created, which filesystem
// an fs context is for. The kernel prefixes what it logs on a context with
// the filesystem's name, which the context's creator cannot choose; a bad
// value for an option bpffs knows makes it log one line.
func checkBPFContext(fsfd int) error {
	kernelLog(fsfd) // drop whatever the peer made the kernel log before
	err := unix.FsconfigSetString(fsfd, "mode", "bpfgate-probe")
	logged := kernelLog(fsfd)
	if errors.Is(err, unix.EINVAL) && strings.HasPrefix(logged, "e bpf: ") {
		return nil
	}
	if logged == "" {
		logged = fmt.Sprint(err)
	}
	return fmt.Errorf("%w (the kernel says: %s)", ErrNotBPFFS, Sanitize(logged))
}

// checkNotHostOwned asks the kernel whose bpffs this is: BPF_TOKEN_CREATE
// from the initial user namespace fails with EPERM when another namespace
// owns the filesystem, and with EOPNOTSUPP when the initial one does.
func checkNotHostOwned(mfd int) error {
	root, err := unix.Openat(mfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the new filesystem: %w", err)
	}
	defer unix.Close(root)
	tok, err := sys.TokenCreate(root)
	if err == nil {
		unix.Close(tok)
	}
	if errors.Is(err, unix.EPERM) {
		return nil
	}
	return fmt.Errorf("%w: it belongs to the host's user namespace (token create: %v)", ErrWrongOwner, err)
}

// checkOwner makes sure the user namespace owner owns the bpffs mounted at
// mfd. Only a process in that namespace can tell: this binary re-executed
// as the verify helper of package launch/nsexec, non-dumpable, bounded by
// HandshakeTimeout. Without the helper (a build without cgo) the check that
// no host namespace owns it has to do.
func checkOwner(mfd int, owner *os.File, deadline time.Time) error {
	if !nsexec.Available {
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(mfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("the owner check: %w", err)
	}
	mnt := os.NewFile(uintptr(dup), "bpffs")
	defer mnt.Close()
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"bpfgate-verify"},
		Env:         []string{nsexec.EnvMode + "=" + nsexec.ModeVerify},
		ExtraFiles:  []*os.File{owner, mnt},
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	// The helper dies with this thread (Pdeathsig): keep the thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the owner check: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Until(deadline)):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("the owner check: %w", ErrTimeout)
	}
	switch code := cmd.ProcessState.ExitCode(); {
	case err == nil:
		return nil
	case code == nsexec.VerifyForeign:
		return fmt.Errorf("%w: another user namespace made the filesystem context", ErrWrongOwner)
	default:
		return fmt.Errorf("the owner check failed: %v", err)
	}
}

// fdKind is what /proc/self/fd says fd is.
func fdKind(fd int) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// peerError turns what the peer sent into an error. The peer may be
// hostile: its words are cut short and stripped of control characters
// before they reach logs and terminals.
func peerError(msg []byte, what string) error {
	if rest, ok := strings.CutPrefix(string(msg), msgError); ok {
		return errors.New("the helper reports: " + Sanitize(rest))
	}
	return fmt.Errorf("%s: %q", what, Sanitize(string(msg)))
}

// maxPeerText bounds how much of a peer's message an error quotes.
const maxPeerText = 300

// Sanitize makes text from an untrusted peer fit for an error message: at
// most maxPeerText bytes, control characters replaced by '?'.
func Sanitize(s string) string {
	cut := len(s) > maxPeerText
	if cut {
		s = s[:maxPeerText]
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
	if cut {
		s += "..."
	}
	return s
}

func send(sock int, msg string) error {
	return unix.Sendmsg(sock, []byte(msg), nil, nil, 0)
}

// recvTimeout waits for one message and at most one fd; an empty message
// means the peer closed.
func recvTimeout(sock int, deadline time.Time) ([]byte, int, error) {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, -1, ErrTimeout
		}
		fds := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, -1, fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			continue
		}
		msg, got, err := sys.RecvFDs(sock, make([]byte, 4096))
		if err != nil {
			return nil, -1, err
		}
		if len(got) > 1 {
			for _, f := range got {
				unix.Close(f)
			}
			return nil, -1, fmt.Errorf("the peer sent %d fds with one message; the handshake takes one", len(got))
		}
		fd := -1
		if len(got) == 1 {
			fd = got[0]
		}
		if len(msg) == 0 && fd < 0 {
			return nil, -1, ErrPeerGone
		}
		return msg, fd, nil
	}
}
