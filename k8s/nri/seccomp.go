package nri

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/boundedio"
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

// AllowBPF is s rewritten to let bpf(2) through: bpf is taken out of the
// rules that do not allow it, and ocihook.AllowBPFSyscall goes ahead of
// the others (runc and crun keep the first rule libseccomp is given for a
// system call, and leave out rules that do what the default action does,
// so the allow rule alone does nothing against a deny rule under an allow
// default). An errnoRet of EPERM, the default, is dropped; any other is an
// error wrapping ErrSeccompRewrite: containerd before 2.3 dereferences a
// nil pointer on a rule's errnoRet in an NRI adjustment, and NRI drops the
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
		names := r.Names
		if r.Action != string(specs.ActAllow) && r.Action != string(specs.ActLog) && slices.Contains(names, "bpf") {
			names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "bpf" })
			if len(names) == 0 {
				continue
			}
		}
		out.Syscalls = append(out.Syscalls, &api.LinuxSyscall{Names: names, Action: r.Action, Args: r.Args})
	}
	if ok, err := AllowsBPF(out); err != nil || !ok {
		return nil, fmt.Errorf("%w: bpf(2) is still blocked after the rewrite (%v)", ErrSeccompRewrite, err)
	}
	return out, nil
}

// maxSeccompSize bounds a Localhost seccomp profile the plugin reads.
const maxSeccompSize = 4 << 20

// seccompOf is the seccomp policy the container will get, as far as NRI
// shows it: the policy itself when the runtime passes it (containerd 2.2
// does not), else the Localhost profile's file, read as the plain OCI JSON
// containerd reads it as. For RuntimeDefault it is nil and known false:
// containerd's default profile allows bpf(2) to a container with CAP_BPF,
// and the hook checks the result.
func seccompOf(ctr *api.Container) (s *api.LinuxSeccomp, known bool, err error) {
	linux := ctr.GetLinux()
	if p := linux.GetSeccompPolicy(); p != nil {
		return p, true, nil
	}
	prof := linux.GetSeccompProfile()
	switch prof.GetProfileType() {
	case api.SecurityProfile_UNCONFINED:
		return nil, true, nil
	case api.SecurityProfile_LOCALHOST:
		data, err := boundedio.ReadFile(prof.GetLocalhostRef(), maxSeccompSize)
		if err != nil {
			return nil, false, fmt.Errorf("localhost seccomp profile: %w", err)
		}
		s, err := decodeLocalhost(prof.GetLocalhostRef(), data)
		return s, err == nil, err
	}
	return nil, false, nil
}

// decodeLocalhost decodes a Localhost profile as containerd does, into
// NRI's form. NRI's form holds argument indexes and errnos in 32 bits: a
// profile that does not survive the conversion unchanged (an index of
// 1<<32 would come out as 0, valid where runc refuses the original) is an
// error wrapping ErrSeccompRewrite.
func decodeLocalhost(path string, data []byte) (*api.LinuxSeccomp, error) {
	var o specs.LinuxSeccomp
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("localhost seccomp profile %s: %w", path, err)
	}
	s := api.FromOCILinuxSeccomp(&o)
	before, err := json.Marshal(&o)
	if err != nil {
		return nil, err
	}
	after, err := json.Marshal(ociSeccomp(s))
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(before, after) {
		return nil, fmt.Errorf("%w: localhost seccomp profile %s has values NRI cannot carry (argument indexes and errnos must fit in 32 bits)", ErrSeccompRewrite, path)
	}
	return s, nil
}
