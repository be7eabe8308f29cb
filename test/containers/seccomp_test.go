package containers

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/doctor"
	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/launch"
)

// TestInterpreterOnPodmanFilters runs the seccomp interpreter over the
// filters runc compiles with libseccomp from containers-common's default
// profile and from bpfgate's, taken from running containers, for calls
// whose fate the profile spells out.
func TestInterpreterOnPodmanFilters(t *testing.T) {
	e := setup(t)
	const (
		i386Read, i386BPF = 3, 357
		personality       = 135
	)
	eperm, enosys := seccomp.Errno|seccomp.Action(unix.EPERM), seccomp.Errno|seccomp.Action(unix.ENOSYS)
	type call struct {
		name string // the system call's, then what the case is about
		arch uint32
		nr   int32
		args []uint64
		want seccomp.Action
	}
	common := []call{
		{"read", unix.AUDIT_ARCH_X86_64, unix.SYS_READ, nil, seccomp.Allow},
		// Both allowed and denied in podman's rendering of the profile:
		// libseccomp keeps the first rule, which allows it.
		{"setns", unix.AUDIT_ARCH_X86_64, unix.SYS_SETNS, nil, seccomp.Allow},
		{"perf_event_open", unix.AUDIT_ARCH_X86_64, unix.SYS_PERF_EVENT_OPEN, nil, eperm},
		{"nosuchcall: a number no kernel has", unix.AUDIT_ARCH_X86_64, 1000, nil, enosys},
		{"personality PER_LINUX", unix.AUDIT_ARCH_X86_64, personality, []uint64{0}, seccomp.Allow},
		{"personality 0xffffffff: a query", unix.AUDIT_ARCH_X86_64, personality, []uint64{0xffffffff}, seccomp.Allow},
		{"personality PER_BSD", unix.AUDIT_ARCH_X86_64, personality, []uint64{6}, enosys},
		{"i386 read", unix.AUDIT_ARCH_I386, i386Read, nil, seccomp.Allow},
	}
	for _, tc := range []struct {
		name  string
		flags []string
		calls []call
	}{
		{"default profile", []string{autoUserNS, "--cap-add", "bpf"}, append(common,
			call{"bpf", unix.AUDIT_ARCH_X86_64, unix.SYS_BPF, []uint64{0}, eperm},
			call{"i386 bpf", unix.AUDIT_ARCH_I386, i386BPF, nil, eperm})},
		{"bpfgate's profile", e.userns(), append(common,
			call{"bpf", unix.AUDIT_ARCH_X86_64, unix.SYS_BPF, []uint64{0}, seccomp.Allow},
			call{"bpf token_create", unix.AUDIT_ARCH_X86_64, unix.SYS_BPF, []uint64{36}, seccomp.Allow},
			call{"i386 bpf", unix.AUDIT_ARCH_I386, i386BPF, nil, seccomp.Allow})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.podmanStart(t, tc.flags...)
			out, err := run("podman", "inspect", "--format", "{{.State.Pid}} {{.OCIConfigPath}}", id)
			if err != nil {
				t.Fatal(err)
			}
			pidText, config, _ := strings.Cut(strings.TrimSpace(out), " ")
			pid, err := strconv.Atoi(pidText)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := doctor.LoadSpec(config)
			if err != nil {
				t.Fatal(err)
			}
			p, err := launch.OpenProcess(pid)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			filters, err := seccomp.ReadFilters(p, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.calls {
				res := make([]seccomp.Action, len(filters))
				d := &seccomp.Data{Nr: c.nr, Arch: c.arch}
				copy(d.Args[:], c.args)
				for i, f := range filters {
					res[i] = f.Run(d)
				}
				got := seccomp.Combine(res)
				if got != c.want {
					t.Errorf("%s: got %v (%#x), want %v", c.name, got, uint32(got), c.want)
				}
				// What config.json says, evaluated without the filter, agrees.
				if c.arch != unix.AUDIT_ARCH_X86_64 {
					continue
				}
				var arg0 uint64
				if len(c.args) > 0 {
					arg0 = c.args[0]
				}
				name, _, _ := strings.Cut(c.name, " ")
				if fromConfig, _, err := seccomp.OCIAction(spec.Linux.Seccomp, name, arg0); err != nil || fromConfig != got {
					t.Errorf("%s: config.json says %v (%v), the filter %v", c.name, fromConfig, err, got)
				}
			}
		})
	}
}
