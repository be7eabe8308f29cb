package bpffs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/sys"
)

// Messages of the delegation handshake.
const (
	msgContext = "context" // workload → host, with the fs context fd
	msgReady   = "ready"   // host → workload: configured and created
	msgMounted = "mounted" // workload → host: attached at the target
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

// HandshakeTimeout bounds each wait of the host side.
var HandshakeTimeout = 10 * time.Second

// StepError says at which step of the handshake something failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("delegation handshake, step %s: %v", e.Step, e.Err)
}
func (e *StepError) Unwrap() error { return e.Err }

// ServeDelegation is the privileged half of the handshake. It receives an fs
// context from the workload on sock, configures it with opts (which takes
// CAP_SYS_ADMIN in the initial user namespace), creates the filesystem, and
// waits until the workload has attached it. sock must be a SOCK_SEQPACKET
// unix socket. Every fd it receives is closed before it returns.
func ServeDelegation(sock int, opts Options) error {
	msg, fsfd, err := recvTimeout(sock)
	if err != nil {
		return &StepError{StepSend, err}
	}
	if fsfd < 0 {
		return &StepError{StepSend, peerError(msg, "no fs context fd came with the message")}
	}
	err = configure(fsfd, opts)
	unix.Close(fsfd)
	if err != nil {
		send(sock, msgError+err.Error())
		return &StepError{StepConfig, err}
	}
	if err := send(sock, msgReady); err != nil {
		return &StepError{StepConfig, fmt.Errorf("tell workload: %w", err)}
	}
	msg, fd, err := recvTimeout(sock)
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

func configure(fsfd int, opts Options) error {
	if err := Configure(fsfd, opts); err != nil {
		return err
	}
	// The superblock is created here, on the privileged side, so that the
	// kernel checks the delegate_* options with our credentials.
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create bpffs: %w%s", err, suffix(kernelLog(fsfd)))
	}
	return nil
}

func peerError(msg []byte, what string) error {
	s := string(msg)
	if rest, ok := strings.CutPrefix(s, msgError); ok {
		return errors.New(rest)
	}
	return fmt.Errorf("%s: %q", what, s)
}

// MountDelegated is the workload half of the handshake, run inside the
// workload's user and mount namespaces with CAP_SYS_ADMIN there. It creates a
// bpffs context, hands it to the host on sock, and once the host has
// configured it, attaches the filesystem at target (a path, or, if targetFD
// is not -1, the directory fd itself).
func MountDelegated(sock int, target string, targetFD int) error {
	fault(StepOpen)
	fsfd, err := CreateContext()
	if err != nil {
		send(sock, msgError+err.Error())
		return &StepError{StepOpen, err}
	}
	defer unix.Close(fsfd)
	fault(StepSend)
	if err := sys.SendFD(sock, []byte(msgContext), fsfd); err != nil {
		return &StepError{StepSend, err}
	}
	msg, fd, err := sys.Recv(sock, make([]byte, 4096))
	if fd >= 0 {
		unix.Close(fd)
	}
	if err != nil {
		return &StepError{StepConfig, err}
	}
	if len(msg) == 0 {
		return &StepError{StepConfig, ErrPeerGone}
	}
	if string(msg) != msgReady {
		return &StepError{StepConfig, peerError(msg, "unexpected message")}
	}
	fault(StepAttach)
	if err := attach(fsfd, target, targetFD); err != nil {
		send(sock, msgError+err.Error())
		return &StepError{StepAttach, err}
	}
	fault(StepConfirm)
	if err := send(sock, msgMounted); err != nil {
		return &StepError{StepConfirm, err}
	}
	return nil
}

func attach(fsfd int, target string, targetFD int) error {
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if targetFD >= 0 {
		err = unix.MoveMount(mfd, "", targetFD, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	} else {
		err = unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
	}
	if err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", target, err)
	}
	return nil
}

func send(sock int, msg string) error {
	return unix.Sendmsg(sock, []byte(msg), nil, nil, 0)
}

// recvTimeout waits for one message; an empty message means the peer closed.
func recvTimeout(sock int) ([]byte, int, error) {
	deadline := time.Now().Add(HandshakeTimeout)
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
		msg, fd, err := sys.Recv(sock, make([]byte, 4096))
		if err != nil {
			return nil, -1, err
		}
		if len(msg) == 0 && fd < 0 {
			return nil, -1, ErrPeerGone
		}
		return msg, fd, nil
	}
}

// FaultEnv names the environment variable that makes the workload half kill
// itself at a step of the handshake. Only tests set it, to prove that every
// failure leaves nothing behind.
const FaultEnv = "BPFGATE_FAULT"

var faultStep = os.Getenv(FaultEnv)

func fault(step string) {
	if faultStep == step {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // not reached: SIGKILL cannot be caught
	}
}
