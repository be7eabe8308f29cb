package nri

import (
	"errors"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/ocihook"
)

// ErrSeccompRewrite means a container's seccomp policy cannot be given to
// containerd again, with bpf(2) allowed, unchanged otherwise.
var ErrSeccompRewrite = errors.New("cannot rewrite the seccomp policy through NRI")

// ociSeccomp is the OCI form of an NRI seccomp policy (nil for none).
func ociSeccomp(s *api.LinuxSeccomp) *specs.LinuxSeccomp {
	if s == nil {
		return nil
	}
	o := &specs.LinuxSeccomp{
		DefaultAction:    specs.LinuxSeccompAction(s.DefaultAction),
		ListenerPath:     s.ListenerPath,
		ListenerMetadata: s.ListenerMetadata,
	}
	if s.DefaultErrno != nil {
		e := uint(s.DefaultErrno.Value)
		o.DefaultErrnoRet = &e
	}
	for _, a := range s.Architectures {
		o.Architectures = append(o.Architectures, specs.Arch(a))
	}
	for _, f := range s.Flags {
		o.Flags = append(o.Flags, specs.LinuxSeccompFlag(f))
	}
	for _, r := range s.Syscalls {
		rule := specs.LinuxSyscall{Names: r.Names, Action: specs.LinuxSeccompAction(r.Action)}
		if r.ErrnoRet != nil {
			e := uint(r.ErrnoRet.Value)
			rule.ErrnoRet = &e
		}
		for _, a := range r.Args {
			rule.Args = append(rule.Args, specs.LinuxSeccompArg{Index: uint(a.Index), Value: a.Value,
				ValueTwo: a.ValueTwo, Op: specs.LinuxSeccompOperator(a.Op)})
		}
		o.Syscalls = append(o.Syscalls, rule)
	}
	return o
}

// AllowsBPF says whether a container's seccomp policy (nil: none) lets
// every bpf(2) command through, as the OCI hook judges it.
func AllowsBPF(s *api.LinuxSeccomp) (bool, error) {
	res, err := seccomp.EvalOCI(ociSeccomp(s))
	if err != nil {
		return false, err
	}
	return res.Allowed(), nil
}

// AllowBPF is s with ocihook.AllowBPFSyscall ahead of its rules (runc and
// crun keep the first rule libseccomp is given for a system call). An
// errnoRet of EPERM, the default, is dropped; any other is an error
// wrapping ErrSeccompRewrite: containerd before 2.3 dereferences a nil
// pointer on a rule's errnoRet in an NRI adjustment, and NRI drops the
// policy's defaultErrnoRet.
func AllowBPF(s *api.LinuxSeccomp) (*api.LinuxSeccomp, error) {
	if s == nil {
		return nil, nil
	}
	if e := s.DefaultErrno; e != nil && e.Value != uint32(unix.EPERM) {
		return nil, fmt.Errorf("%w: defaultErrnoRet %d is not EPERM (NRI drops it)", ErrSeccompRewrite, e.Value)
	}
	out := &api.LinuxSeccomp{
		DefaultAction:    s.DefaultAction,
		Architectures:    s.Architectures,
		Flags:            s.Flags,
		ListenerPath:     s.ListenerPath,
		ListenerMetadata: s.ListenerMetadata,
	}
	allow := ocihook.AllowBPFSyscall
	out.Syscalls = append(out.Syscalls, &api.LinuxSyscall{Names: allow.Names, Action: string(allow.Action)})
	for i, r := range s.Syscalls {
		if r.ErrnoRet != nil && r.ErrnoRet.Value != uint32(unix.EPERM) {
			return nil, fmt.Errorf("%w: syscalls[%d] (%v) has errnoRet %d, not EPERM (containerd before 2.3 crashes on it)",
				ErrSeccompRewrite, i, r.Names, r.ErrnoRet.Value)
		}
		out.Syscalls = append(out.Syscalls, &api.LinuxSyscall{Names: r.Names, Action: r.Action, Args: r.Args})
	}
	if ok, err := AllowsBPF(out); err != nil || !ok {
		return nil, fmt.Errorf("%w: bpf(2) is still blocked after the rewrite (%v)", ErrSeccompRewrite, err)
	}
	return out, nil
}
