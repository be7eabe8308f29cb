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
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if !opts.Delegation.IsZero() {
		if err := bpffs.CheckTokenSupport(); err != nil {
			return err
		}
	}
	same, err := sameUserNS(pid)
	if err != nil {
		return err
	}
	if same {
		return fmt.Errorf("pid %d: %w", pid, ErrSharedUserNS)
	}
	target, err := openInRoot(pid, path)
	if err != nil {
		return err
	}
	defer target.Close()

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

func sameUserNS(pid int) (bool, error) {
	var self, other unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &self); err != nil {
		return false, fmt.Errorf("own user namespace: %w", err)
	}
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/user", &other); err != nil {
		return false, fmt.Errorf("pid %d: %w", pid, err)
	}
	return self.Ino == other.Ino && self.Dev == other.Dev, nil
}

// openInRoot opens path as the process sees it, without following symlinks
// out of its root.
func openInRoot(pid int, path string) (*os.File, error) {
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pid %d: open root: %w", pid, err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("pid %d: %s: %w", pid, path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}
