package token

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/sys"
)

// Errors BPF_TOKEN_CREATE returns, explained.
var (
	ErrNotOwner      = errors.New("the bpffs is owned by another user namespace, or the caller lacks CAP_BPF in its own (EPERM)")
	ErrInitUserNS    = errors.New("tokens cannot be created in the initial user namespace (EOPNOTSUPP); run the workload in a user namespace, e.g. with bpfgate run")
	ErrNotBPFFSRoot  = errors.New("not the root of a BPF filesystem, or the kernel has no BPF tokens (EINVAL)")
	ErrNothingShared = errors.New("the bpffs delegates nothing (ENOENT); mount it with delegate_* options")
	ErrOPath         = errors.New("the fd is an O_PATH fd (EBADF); open the bpffs root normally")
	// ErrNoTokens means the kernel predates BPF tokens: its bpf(2) has no
	// BPF_TOKEN_CREATE (which it fails with EINVAL, as it fails a bad fd).
	ErrNoTokens = errors.New("kernel does not support BPF tokens (needs Linux 6.9 or later)")
)

// Token is a BPF token file descriptor.
type Token struct {
	fd   int
	path string
}

func explain(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: %w", ErrNotOwner, err)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: %w", ErrInitUserNS, err)
	case errors.Is(err, unix.EINVAL) && !kernelHasTokens():
		return fmt.Errorf("%w: %w", ErrNoTokens, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %w", ErrNotBPFFSRoot, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %w", ErrNothingShared, err)
	case errors.Is(err, unix.EBADF):
		return fmt.Errorf("%w: %w", ErrOPath, err)
	}
	return err
}

// kernelHasTokens tells from the running kernel's bpf commands (its BTF)
// whether it knows BPF_TOKEN_CREATE; without BTF it cannot tell, and says
// yes (EINVAL is then explained both ways).
func kernelHasTokens() bool {
	names, err := delegate.KernelNames()
	if err != nil || names.Source == "builtin" {
		return true
	}
	for _, v := range names.Enums[delegate.Cmds].Values {
		if v.Name == "BPF_TOKEN_CREATE" {
			return true
		}
	}
	return false
}

// Create derives a token from the bpffs mounted at path.
func Create(path string) (*Token, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open bpffs", Path: path, Err: err}
	}
	defer unix.Close(fd)
	t, err := create(fd)
	if err != nil {
		return nil, fmt.Errorf("create token from %s: %w", path, err)
	}
	t.path = path
	return t, nil
}

// CreateFromFD derives a token from an fd of a bpffs root. An O_PATH fd, such
// as fsmount returns, is reopened first: the kernel wants a normal fd.
func CreateFromFD(fd int) (*Token, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("create token: fd %d: %w", fd, err)
	}
	if flags&unix.O_PATH != 0 {
		nfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("create token: reopen O_PATH fd: %w", err)
		}
		defer unix.Close(nfd)
		fd = nfd
	}
	t, err := create(fd)
	if err != nil {
		return nil, fmt.Errorf("create token: %w", err)
	}
	return t, nil
}

func create(bpffs int) (*Token, error) {
	fd, err := sys.TokenCreate(bpffs)
	if err != nil {
		return nil, explain(err)
	}
	t := &Token{fd: fd}
	// A token nobody closes is closed when it is collected, as cilium/ebpf
	// does with its fds.
	runtime.SetFinalizer(t, (*Token).Close)
	return t, nil
}

// FD returns the token's file descriptor, for BPF_F_TOKEN_FD.
func (t *Token) FD() int { return t.fd }

// Path returns the bpffs the token came from, if known.
func (t *Token) Path() string { return t.path }

// Close releases the token.
func (t *Token) Close() error {
	if t == nil || t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	runtime.SetFinalizer(t, nil)
	return err
}

// Info is what a token allows.
type Info struct {
	Allowed delegate.Set `json:"allowed"`
	// Source is "obj_info" (BPF_OBJ_GET_INFO_BY_FD, Linux 6.17+) or "fdinfo".
	Source string `json:"source"`
}

// Info reads what the token allows: from BPF_OBJ_GET_INFO_BY_FD where the
// kernel has it (6.17+), else from /proc/self/fdinfo (6.9+).
func (t *Token) Info() (Info, error) {
	ti, err := sys.TokenObjInfo(t.fd)
	if err == nil {
		return Info{delegate.Set{Cmds: ti.AllowedCmds, Maps: ti.AllowedMaps,
			Progs: ti.AllowedProgs, Attachs: ti.AllowedAttachs}, "obj_info"}, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return Info{}, fmt.Errorf("token info: %w", err)
	}
	s, err := t.FDInfo()
	if err != nil {
		return Info{}, err
	}
	return Info{s, "fdinfo"}, nil
}

// FDInfo reads the token's allowed masks from /proc/self/fdinfo.
func (t *Token) FDInfo() (delegate.Set, error) {
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(t.fd))
	if err != nil {
		return delegate.Set{}, fmt.Errorf("token fdinfo: %w", err)
	}
	return ParseFDInfo(data)
}

// ParseFDInfo decodes the allowed_* lines of a token's fdinfo. The kernel
// prints each mask as "any" or as a hex number.
func ParseFDInfo(data []byte) (delegate.Set, error) {
	var s delegate.Set
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name, ok := strings.CutPrefix(key, "allowed_")
		if !ok {
			continue
		}
		k, ok := delegate.KindByName(name)
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var m uint64
		if val == "any" {
			m = ^uint64(0)
		} else {
			v, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64)
			if err != nil {
				return delegate.Set{}, fmt.Errorf("token fdinfo: %s: %w", key, err)
			}
			m = v
		}
		s.SetMask(k, m)
		found++
	}
	if found == 0 {
		return delegate.Set{}, errors.New("token fdinfo: no allowed_* lines (not a token?)")
	}
	return s, nil
}
