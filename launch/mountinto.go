package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/sys"
	"github.com/bpfgate/bpfgate/launch/nsexec"
)

// ErrSharedUserNS means the target process shares bpfgate's user namespace:
// a token needs a user namespace of its own.
var ErrSharedUserNS = errors.New("the process shares the host's user namespace, so no token can be made there; give it a user namespace of its own")

// MountInto mounts a delegated bpffs at path inside the user and mount
// namespaces of process pid. path is resolved inside the process's root.
func MountInto(pid int, path string, opts bpffs.Options) error {
	if !nsexec.Available {
		return ErrNoHelper
	}
	p, err := OpenProcess(pid)
	if err != nil {
		return err
	}
	defer p.Close()
	dir, err := p.OpenInRoot(path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return MountIntoDir(p, dir, opts)
}

// MountIntoDir mounts a delegated bpffs on dir, a directory in the mount
// namespace of process p, with p's user namespace owning the filesystem.
//
// The helper that does the namespace side is this binary re-executed (see
// package launch/nsexec): it makes itself non-dumpable, joins p's user and
// mount namespaces through p's pidfd, and holds nothing but the handshake
// socket and dir. The owner of p's user namespace can signal it but can
// neither ptrace it nor take its fds; a helper that stalls or dies costs a
// bounded error, and is killed and reaped before MountIntoDir returns.
func MountIntoDir(p *Process, dir *os.File, opts bpffs.Options) error {
	return MountIntoDirContext(context.Background(), p, dir, opts)
}

// MountIntoDirContext is MountIntoDir with every wait bounded by ctx's
// deadline too (each is bounded by bpffs.HandshakeTimeout anyway).
func MountIntoDirContext(ctx context.Context, p *Process, dir *os.File, opts bpffs.Options) error {
	if !nsexec.Available {
		return ErrNoHelper
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if !opts.Delegation.IsZero() {
		if err := bpffs.CheckTokenSupport(); err != nil {
			return err
		}
	}
	pid := p.Pid()
	owner, err := p.openProc("ns/user", unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer owner.Close()
	if same, err := sys.SameFile(owner, "/proc/self/ns/user"); err != nil {
		return err
	} else if same {
		return fmt.Errorf("pid %d: %w", pid, ErrSharedUserNS)
	}

	host, child, err := socketPair()
	if err != nil {
		return err
	}
	defer host.Close()
	// The helper dies with this thread (Pdeathsig): keep the thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"bpfgate-enter"},
		Env:        enterEnv(),
		ExtraFiles: []*os.File{child, p.pidfd, dir},
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
		},
	}
	err = cmd.Start()
	child.Close()
	if err != nil {
		return fmt.Errorf("start the helper: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	serveErr := bpffs.ServeDelegationContext(ctx, host, opts, owner)
	if serveErr != nil {
		_ = cmd.Process.Kill()
	}
	var waitErr error
	select {
	case waitErr = <-done:
	case <-time.After(waitLeft(ctx)):
		_ = cmd.Process.Kill()
		waitErr = <-done
		if serveErr == nil {
			serveErr = fmt.Errorf("the helper did not exit: %w", bpffs.ErrTimeout)
		}
	}
	if serveErr != nil {
		return fmt.Errorf("mount into pid %d: %w", pid, serveErr)
	}
	if waitErr != nil {
		return fmt.Errorf("mount into pid %d: helper: %w", pid, waitErr)
	}
	// The pid named p all along: nothing was done to a reused pid.
	return p.Alive()
}

// enterEnv is the helper's environment: only what it needs, since it runs
// inside somebody else's namespaces.
func enterEnv() []string {
	env := []string{nsexec.EnvMode + "=" + nsexec.ModeEnter}
	if v, ok := os.LookupEnv(nsexec.EnvFault); ok && nsexec.Faults {
		env = append(env, nsexec.EnvFault+"="+v)
	}
	return env
}

// waitLeft is how long a wait that starts now may take: HandshakeTimeout,
// or less if ctx ends sooner.
func waitLeft(ctx context.Context) time.Duration {
	d := bpffs.HandshakeTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		d = max(time.Until(dl), 0)
	}
	return d
}
