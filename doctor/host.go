package doctor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/internal/sys"
)

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// probeTokenCreate asks the kernel whether it knows BPF_TOKEN_CREATE: with
// fd -1 a kernel with tokens fails with EBADF, one without with EINVAL (a
// command it does not know).
func probeTokenCreate() error {
	attr := struct{ flags, fd uint32 }{0, ^uint32(0)}
	fd, err := sys.BPF(sys.BPF_TOKEN_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == nil {
		unix.Close(fd)
		return errors.New("BPF_TOKEN_CREATE accepted fd -1")
	}
	return err
}

func checkKernel() Finding {
	rel := kernelRelease()
	f := Finding{Check: CheckKernel}
	switch err := probeTokenCreate(); {
	case errors.Is(err, unix.EBADF):
		f.Status, f.Seen = OK, "Linux "+rel+": BPF_TOKEN_CREATE is known (it refused fd -1 with EBADF)"
	case errors.Is(err, unix.EINVAL):
		f.Status, f.Seen = Fail, "Linux "+rel+": bpf(2) does not know BPF_TOKEN_CREATE (EINVAL): no BPF tokens"
		f.Fix = "boot Linux 6.9 or later (tokens came with 6.9; token info with 6.17)"
	case errors.Is(err, unix.ENOSYS):
		f.Status, f.Seen = Fail, "Linux "+rel+": no bpf(2) at all (ENOSYS)"
		f.Fix = "boot a kernel built with CONFIG_BPF_SYSCALL, 6.9 or later"
	case errors.Is(err, unix.EPERM):
		f.Status, f.Seen = Warn, "Linux "+rel+": bpf(2) refused bpfgate itself (EPERM): is bpfgate under a seccomp filter or an LSM?"
		f.Fix = "run bpfgate doctor as root on the host"
	default:
		f.Status, f.Seen = Warn, fmt.Sprintf("Linux %s: BPF_TOKEN_CREATE probe: %v", rel, err)
		f.Fix = "tokens need Linux 6.9 or later"
	}
	return f
}

const unprivPath = "/proc/sys/kernel/unprivileged_bpf_disabled"

// checkUnprivileged reads the sysctl. In Linux 6.9+ map_create and
// prog_load test it only when the loader lacks CAP_BPF through its token
// (bpf_token_capable), and BPF_TOKEN_CREATE, BTF loads and the other
// commands never look at it: it stops loaders without CAP_BPF, not token
// users.
func checkUnprivileged() Finding {
	f := Finding{Check: CheckUnprivileged, Status: OK}
	data, err := boundedio.ReadFile(unprivPath, 64)
	if err != nil {
		f.Status, f.Seen = Warn, fmt.Sprintf("cannot read %s: %v", unprivPath, err)
		return f
	}
	v := strings.TrimSpace(string(data))
	what := map[string]string{
		"0": "0: unprivileged BPF allowed",
		"1": "1: unprivileged BPF off until reboot",
		"2": "2: unprivileged BPF off (root may turn it back on)",
	}[v]
	if what == "" {
		what = v
	}
	f.Seen = what + "; this does not matter to token users: the kernel skips it for a loader that has CAP_BPF through its token (map_create and prog_load check the token first; token_create and btf_load never look at it); it only stops loads by processes without CAP_BPF"
	return f
}

const lockdownPath = "/sys/kernel/security/lockdown"

// readLockdown reads the lockdown state: from securityfs where it is
// mounted, else from a securityfs mount made for the read and never
// attached anywhere.
func readLockdown() (string, error) {
	data, err := boundedio.ReadFile(lockdownPath, 256)
	if err == nil {
		return string(data), nil
	}
	fsfd, err := unix.Fsopen("securityfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("securityfs is not mounted and cannot be opened: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return "", fmt.Errorf("securityfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOEXEC|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return "", fmt.Errorf("securityfs: %w", err)
	}
	defer unix.Close(mfd)
	fd, err := unix.Openat(mfd, "lockdown", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("securityfs: lockdown: %w (no lockdown LSM?)", err)
	}
	f := os.NewFile(uintptr(fd), lockdownPath)
	defer f.Close()
	data, err = boundedio.ReadAll(f, 256, lockdownPath)
	return string(data), err
}

func checkLockdown() Finding {
	f := Finding{Check: CheckLockdown}
	text, err := readLockdown()
	if err != nil {
		f.Status, f.Seen = OK, "unknown ("+err.Error()+"); without the lockdown LSM nothing is locked down"
		return f
	}
	mode := "none"
	if i, j := strings.IndexByte(text, '['), strings.IndexByte(text, ']'); i >= 0 && j > i {
		mode = text[i+1 : j]
	}
	switch mode {
	case "none":
		f.Status, f.Seen = OK, "none"
	case "integrity":
		f.Status, f.Seen = OK, "integrity: bpf_probe_write_user is refused; everything else BPF works"
	case "confidentiality":
		f.Status = Warn
		f.Seen = "confidentiality: the verifier refuses bpf_probe_read_kernel and the helpers that read kernel memory, and kprobes, perf and tracefs are off: tracing tools fail"
		f.Fix = "boot with lockdown=integrity or none, where policy allows (Secure Boot may force it)"
	default:
		f.Status, f.Seen = Warn, "unexpected: "+strconv.Quote(strings.TrimSpace(text))
	}
	return f
}
