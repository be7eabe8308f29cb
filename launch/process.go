package launch

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrProcessGone means the process exited (and its pid may already belong to
// another one) while bpfgate was looking at it.
var ErrProcessGone = errors.New("the process exited while bpfgate was inspecting it")

// Process is a running process held by a pidfd, so that a pid reused by
// another process is never mistaken for it. Everything MountIntoDir learns
// about the process is read through /proc/PID and confirmed against the
// pidfd afterwards.
type Process struct {
	pid   int
	pidfd *os.File
}

// OpenProcess takes hold of process pid.
func OpenProcess(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: not a process id", pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pid %d: pidfd_open: %w", pid, err)
	}
	return &Process{pid: pid, pidfd: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.pid }

// PidFD returns the pidfd; it stays owned by p.
func (p *Process) PidFD() int { return int(p.pidfd.Fd()) }

// Close releases the pidfd.
func (p *Process) Close() error { return p.pidfd.Close() }

// Alive confirms that the pid still names the process p holds. Call it
// after reading anything under /proc/PID: if it succeeds, what was read
// belonged to p.
func (p *Process) Alive() error {
	if err := unix.PidfdSendSignal(p.PidFD(), 0, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pid %d: %w", p.pid, ErrProcessGone)
		}
		return fmt.Errorf("pid %d: pidfd_send_signal: %w", p.pid, err)
	}
	return nil
}

// openProc opens /proc/PID/name with flags and confirms it belongs to p.
func (p *Process) openProc(name string, flags int) (*os.File, error) {
	path := "/proc/" + strconv.Itoa(p.pid) + "/" + name
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: 0, // /proc/PID/root is a magic link: following it is the point
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pid %d: %w", p.pid, ErrProcessGone)
		}
		return nil, fmt.Errorf("pid %d: open %s: %w", p.pid, name, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := p.Alive(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenRoot opens the process's root directory (O_PATH), as it sees it.
func (p *Process) OpenRoot() (*os.File, error) {
	return p.openProc("root", unix.O_PATH|unix.O_DIRECTORY)
}

// OpenInRoot opens dir, a directory as the process sees it, resolved inside
// the process's root: neither symlinks nor ".." lead out of it.
func (p *Process) OpenInRoot(dir string) (*os.File, error) {
	root, err := p.OpenRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return OpenInRoot(root, dir)
}

// OpenInRoot opens dir (O_PATH) below root as if root were "/": absolute
// symlinks and ".." stay inside root, and magic links are refused.
func OpenInRoot(root *os.File, dir string) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(root.Fd()), dir, how)
	// With ".." in the path the kernel gives up (EAGAIN) when a rename or
	// mount anywhere raced the lookup, rather than risk a wrong answer.
	for try := 0; err == unix.EAGAIN && try < 64; try++ {
		fd, err = unix.Openat2(int(root.Fd()), dir, how)
	}
	if err != nil {
		return nil, fmt.Errorf("%s (inside %s): %w", dir, root.Name(), err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}
