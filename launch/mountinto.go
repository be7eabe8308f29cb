package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
)

// ErrSharedUserNS means the target process shares bpfgate's user namespace:
// a token needs a user namespace of its own.
var ErrSharedUserNS = errors.New("the process shares the host's user namespace, so no token can be made there; give it a user namespace of its own")

// Nsenter is the nsenter(1) binary MountInto uses to enter a running
// process's namespaces: a Go program cannot join a user namespace itself.
var Nsenter = "nsenter"

// MountInto mounts a delegated bpffs at path inside the user and mount
// namespaces of process pid. path is resolved inside the process's root.
func MountInto(pid int, path string, opts bpffs.Options) error {
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
func MountIntoDir(p *Process, dir *os.File, opts bpffs.Options) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if !opts.Delegation.IsZero() {
		if err := bpffs.CheckTokenSupport(); err != nil {
			return err
		}
	}
	pid := p.Pid()
	same, err := p.sameUserNS()
	if err != nil {
		return err
	}
	if same {
		return fmt.Errorf("pid %d: %w", pid, ErrSharedUserNS)
	}
	path := dir.Name()
	target := dir

	host, child, err := socketPair()
	if err != nil {
		return err
	}
	defer unix.Close(host)

	// nsenter opens --root before it enters the namespaces, so its chroot
	// puts the host's /proc back in reach, where /proc/self/fd/5 is this
	// very executable (even if it was replaced on disk since).
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("open own executable: %w", err)
	}
	defer self.Close()
	cmd := exec.Command(Nsenter, "--target", strconv.Itoa(pid), "--user", "--mount",
		"--root=/", "--wd=/", "--", "/proc/self/fd/5")
	cmd.Env = append(os.Environ(), childEnv+"=mount", targetEnv+"="+path)
	cmd.ExtraFiles = []*os.File{child, target, self}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Start()
	child.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", Nsenter, err)
	}
	serveErr := bpffs.ServeDelegation(host, opts)
	if serveErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if serveErr != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("mount into pid %d: %w (nsenter: %s)", pid, serveErr, msg)
		}
		return fmt.Errorf("mount into pid %d: %w", pid, serveErr)
	}
	if waitErr != nil {
		return fmt.Errorf("mount into pid %d: helper: %w", pid, waitErr)
	}
	return nil
}
