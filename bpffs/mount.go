package bpffs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
)

var (
	// ErrNoTokenSupport means the kernel predates BPF tokens (Linux 6.9): it
	// silently ignores delegate_* options, so a delegated mount would
	// delegate nothing.
	ErrNoTokenSupport = errors.New("kernel does not support BPF token delegation (needs Linux 6.9 or later)")
	// ErrNotPermitted means the caller lacks CAP_SYS_ADMIN in the initial
	// user namespace, which delegation options require.
	ErrNotPermitted = errors.New("setting delegate_* options needs CAP_SYS_ADMIN in the initial user namespace (run as root)")
)

// Owner says who owns a BPF filesystem's root and its mode; nil fields keep
// the kernel's defaults (the creator's fsuid and fsgid, mode 1777).
type Owner struct {
	UID, GID, Mode *uint32
}

// Options of a BPF filesystem. Nil fields keep the kernel's defaults: the
// creating process's fsuid and fsgid, and mode 0777 (plus sticky bit).
type Options struct {
	Delegation delegate.Set
	UID        *uint32
	GID        *uint32
	Mode       *uint32
}

// Configure applies opts to a bpffs context from fsopen. Masks are handed
// to the kernel as single hex numbers: they do not depend on names and
// sidestep the kernel parser's quirks.
func Configure(fsfd int, opts Options) error {
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fsfd, key, value); err != nil {
			return configError(fsfd, key, value, err)
		}
		return nil
	}
	if opts.UID != nil {
		if err := set("uid", strconv.FormatUint(uint64(*opts.UID), 10)); err != nil {
			return err
		}
	}
	if opts.GID != nil {
		if err := set("gid", strconv.FormatUint(uint64(*opts.GID), 10)); err != nil {
			return err
		}
	}
	if opts.Mode != nil {
		if err := set("mode", strconv.FormatUint(uint64(*opts.Mode), 8)); err != nil {
			return err
		}
	}
	for _, k := range delegate.Kinds {
		m := opts.Delegation.Mask(k)
		if m == 0 {
			continue
		}
		if err := set(k.Option(), "0x"+strconv.FormatUint(m, 16)); err != nil {
			return err
		}
	}
	return nil
}

// configError adds what the kernel logged on the fs context to err.
func configError(fsfd int, key, value string, err error) error {
	msg := kernelLog(fsfd)
	if errors.Is(err, unix.EPERM) && strings.HasPrefix(key, "delegate_") {
		err = fmt.Errorf("%w: %w", ErrNotPermitted, err)
	}
	if msg != "" {
		return fmt.Errorf("bpffs option %s=%s: %w (kernel: %s)", key, value, err, msg)
	}
	return fmt.Errorf("bpffs option %s=%s: %w", key, value, err)
}

// kernelLog drains the messages the kernel queued on an fs context fd.
func kernelLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// materialize creates the superblock of a configured context and returns a
// detached mount (an O_PATH fd) for it.
func materialize(fsfd int) (int, error) {
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("create bpffs: %w%s", err, suffix(kernelLog(fsfd)))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsmount bpffs: %w%s", err, suffix(kernelLog(fsfd)))
	}
	return mfd, nil
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return " (kernel: " + msg + ")"
}

// Mount mounts a new bpffs with opts on path, in the caller's namespaces.
func Mount(path string, opts Options) error {
	if !opts.Delegation.IsZero() {
		if err := CheckTokenSupport(); err != nil {
			return err
		}
	}
	fsfd, err := unix.Fsopen("bpf", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen bpf: %w", err)
	}
	defer unix.Close(fsfd)
	if err := Configure(fsfd, opts); err != nil {
		return err
	}
	mfd, err := materialize(fsfd)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", path, err)
	}
	return nil
}

var (
	supportOnce sync.Once
	supportErr  error
)

// CheckTokenSupport reports whether the kernel understands delegate_*
// options. Kernels before tokens ignore unknown bpffs options, so this tries
// a value that must be rejected: a kernel that accepts it would ignore a
// real delegation too.
func CheckTokenSupport() error {
	supportOnce.Do(func() {
		fd, err := unix.Fsopen("bpf", unix.FSOPEN_CLOEXEC)
		if err != nil {
			supportErr = fmt.Errorf("fsopen bpf: %w", err)
			return
		}
		defer unix.Close(fd)
		err = unix.FsconfigSetString(fd, "delegate_cmds", "bpfgate_must_fail")
		switch {
		case err == nil:
			supportErr = ErrNoTokenSupport
		case errors.Is(err, unix.EINVAL):
			supportErr = nil
		default:
			supportErr = fmt.Errorf("probe token support: %w", err)
		}
	})
	return supportErr
}

// Unmount detaches the mount on path (lazily, like umount -l).
func Unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}

// IsBPFFS reports whether path is on a BPF filesystem.
func IsBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}
