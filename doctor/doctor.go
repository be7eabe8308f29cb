package doctor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/launch"
)

// Status is how a check came out.
type Status string

const (
	// OK: nothing in the way.
	OK Status = "ok"
	// Warn: something that makes some BPF use fail, or that bpfgate could
	// not tell.
	Warn Status = "warn"
	// Fail: BPF through a token cannot work until it is fixed.
	Fail Status = "fail"
)

// The checks, in the order they run.
const (
	CheckKernel        = "kernel"
	CheckUnprivileged  = "unprivileged_bpf_disabled"
	CheckLockdown      = "lockdown"
	CheckBPFFS         = "bpffs"
	CheckToken         = "token"
	CheckCaps          = "capabilities"
	CheckUserNS        = "user_namespace"
	CheckSeccomp       = "seccomp"
	CheckSeccompConfig = "seccomp_config"
	CheckCgroup        = "cgroup_v2"
	CheckSocketFilter  = "socket_filter_probe"
	CheckPerf          = "perf_events"
	CheckGap           = "delegation_gap"
	CheckCommand       = "command"
)

// Finding is the outcome of one check.
type Finding struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Seen says what the check found.
	Seen string `json:"seen"`
	// Fix says what to do, when the status is not OK.
	Fix string `json:"fix,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%-4s %s: %s", f.Status, f.Check, f.Seen)
	if f.Fix != "" {
		s += "\n     fix: " + f.Fix
	}
	return s
}

// Report is every finding about one process (or the host alone), in order.
type Report struct {
	// Pid is the process checked (0: the host only).
	Pid int `json:"pid,omitempty"`
	// Container is the container's id, when one was checked.
	Container string `json:"container,omitempty"`
	// Delegation is the delegation of the bpffs the process would take its
	// token from (the one at /sys/fs/bpf, else the first that delegates).
	Delegation *delegate.Set `json:"-"`
	// BPFFS is that bpffs's mount point, as the process sees it.
	BPFFS    string    `json:"bpffs,omitempty"`
	Findings []Finding `json:"findings"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, f := range r.Findings {
		if f.Status == Fail {
			return true
		}
	}
	return false
}

// Find returns the finding of a check, if it ran.
func (r *Report) Find(check string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Check == check {
			return f, true
		}
	}
	return Finding{}, false
}

func (r *Report) String() string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

// Options tune the checks.
type Options struct {
	// Names are the running kernel's (delegate.KernelNames if nil).
	Names *delegate.Names
	// Timeout bounds each wait on the process: for it to stop for ptrace,
	// for the token helper (2 s if 0).
	Timeout time.Duration
	// Spec is the container's OCI config, when the process is a
	// container's init: its seccomp section is evaluated too, and fixes
	// are given in the terms of what made it (its annotations tell, see
	// ocihook.CallerOf): pod spec fields for Kubernetes, podman flags,
	// config.json fields for plain runc.
	Spec *specs.Spec

	// recording: bpfgate's recorder serves the process's bpf(2) user
	// notifications (RunCommand), and lets every call continue.
	recording bool
}

func (o *Options) fill() error {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Names == nil {
		n, err := delegate.KernelNames()
		if err != nil {
			return err
		}
		o.Names = n
	}
	return nil
}

// CheckHost runs the checks that need no process: kernel, the
// unprivileged_bpf_disabled sysctl and lockdown.
func CheckHost(opts Options) (*Report, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	r := &Report{}
	hostChecks(r)
	return r, nil
}

// ErrNotRoot means the checks of a process need root: they read its
// seccomp filters and ask the kernel about its user namespace.
var ErrNotRoot = errors.New("bpfgate doctor needs root to look at a process (ptrace, its namespaces)")

// CheckProcess runs every check on process pid, in order.
func CheckProcess(pid int, opts Options) (*Report, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	p, err := launch.OpenProcess(pid)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return checkHeld(p, &opts)
}

// checkHeld runs every check on a process already held.
func checkHeld(p *launch.Process, opts *Options) (*Report, error) {
	r := &Report{Pid: p.Pid()}
	hostChecks(r)
	if err := processChecks(r, p, opts); err != nil {
		return nil, err
	}
	return r, nil
}

func hostChecks(r *Report) {
	r.add(checkKernel())
	r.add(checkUnprivileged())
	r.add(checkLockdown())
}
