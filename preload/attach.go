package preload

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Attach is a kind of hook a manifest can attach a program to.
type Attach string

// The hooks Apply knows.
const (
	AttachXDP        Attach = "xdp"
	AttachTCX        Attach = "tcx"
	AttachTracepoint Attach = "tracepoint"
	AttachKprobe     Attach = "kprobe"
	AttachKretprobe  Attach = "kretprobe"
	AttachFentry     Attach = "fentry"
	AttachFexit      Attach = "fexit"
	AttachFmodRet    Attach = "fmod_ret"
	AttachLSM        Attach = "lsm"
	AttachCgroup     Attach = "cgroup"
	AttachIter       Attach = "iter"
	// AttachNone loads and pins a program without attaching it.
	AttachNone Attach = "none"
)

var attachKinds = []Attach{AttachXDP, AttachTCX, AttachTracepoint, AttachKprobe, AttachKretprobe,
	AttachFentry, AttachFexit, AttachFmodRet, AttachLSM, AttachCgroup, AttachIter, AttachNone}

// ErrTarget means an attach target (interface, tracepoint, function,
// cgroup) does not exist.
var ErrTarget = errors.New("no such attach target")

// ErrUnsupported means the running kernel cannot attach this kind of hook.
var ErrUnsupported = errors.New("hook not supported by this kernel")

// infer finds the hook a program's section implies.
func infer(ps *ebpf.ProgramSpec) Attach {
	switch ps.Type {
	case ebpf.XDP:
		return AttachXDP
	case ebpf.SchedCLS:
		if ps.AttachType == ebpf.AttachTCXIngress || ps.AttachType == ebpf.AttachTCXEgress {
			return AttachTCX
		}
	case ebpf.TracePoint:
		return AttachTracepoint
	case ebpf.Kprobe:
		if strings.HasPrefix(ps.SectionName, "kretprobe") {
			return AttachKretprobe
		}
		return AttachKprobe
	case ebpf.Tracing:
		switch ps.AttachType {
		case ebpf.AttachTraceIter:
			return AttachIter
		case ebpf.AttachTraceFEntry:
			return AttachFentry
		case ebpf.AttachTraceFExit:
			return AttachFexit
		case ebpf.AttachModifyReturn:
			return AttachFmodRet
		}
	case ebpf.LSM:
		return AttachLSM
	case ebpf.CGroupSKB, ebpf.CGroupSock, ebpf.CGroupSockAddr, ebpf.CGroupSockopt, ebpf.CGroupSysctl, ebpf.CGroupDevice:
		return AttachCgroup
	}
	return ""
}

// fits says whether a program of this spec can be attached as a.
func fits(a Attach, ps *ebpf.ProgramSpec) bool {
	switch a {
	case AttachXDP:
		return ps.Type == ebpf.XDP
	case AttachTCX:
		return ps.Type == ebpf.SchedCLS
	case AttachTracepoint:
		return ps.Type == ebpf.TracePoint
	case AttachKprobe, AttachKretprobe:
		return ps.Type == ebpf.Kprobe
	case AttachFentry, AttachFexit, AttachFmodRet, AttachIter:
		return ps.Type == ebpf.Tracing && infer(ps) == a
	case AttachLSM:
		return ps.Type == ebpf.LSM
	case AttachCgroup:
		return infer(ps) == AttachCgroup
	case AttachNone:
		return true
	}
	return false
}

// resolve fills in what the manifest left to the section and checks that
// the target exists, without loading anything.
func (m *Manifest) resolve(i int, ps *ebpf.ProgramSpec) error {
	p := &m.Programs[i]
	key := "programs." + p.Name
	if p.Attach == "" {
		if p.Attach = infer(ps); p.Attach == "" {
			return m.errorf(key+".attach", "program %s (section %s) has no hook bpfgate can infer; give attach: one of %s (none loads it unattached)",
				p.Name, ps.SectionName, joinKinds())
		}
	}
	known := false
	for _, k := range attachKinds {
		known = known || k == p.Attach
	}
	if !known {
		return m.errorf(key+".attach", "unknown hook %q (want one of %s)", p.Attach, joinKinds())
	}
	if !fits(p.Attach, ps) {
		return m.errorf(key+".attach", "program %s is of type %s (section %s); it cannot attach as %s",
			p.Name, ps.Type, ps.SectionName, p.Attach)
	}
	need := func(field, value, example string) error {
		if value == "" {
			return m.errorf(key+"."+field, "missing: %s needs %s, e.g. %s", p.Attach, field, example)
		}
		return nil
	}
	switch p.Attach {
	case AttachXDP, AttachTCX:
		if err := need("interface", p.Interface, "eth0"); err != nil {
			return err
		}
		if _, err := net.InterfaceByName(p.Interface); err != nil {
			return m.errorf(key+".interface", "%w: interface %q: %v", ErrTarget, p.Interface, err)
		}
		if p.Attach == AttachTCX {
			if p.Direction == "" {
				p.Direction = "ingress"
				if ps.AttachType == ebpf.AttachTCXEgress {
					p.Direction = "egress"
				}
			}
			if p.Direction != "ingress" && p.Direction != "egress" {
				return m.errorf(key+".direction", "%q: want ingress or egress", p.Direction)
			}
		}
	case AttachTracepoint:
		if p.Target == "" {
			p.Target = ps.AttachTo
		}
		if err := need("target", p.Target, "syscalls/sys_enter_openat"); err != nil {
			return err
		}
		if err := tracepointExists(p.Target); err != nil {
			return m.errorf(key+".target", "%w: tracepoint %q: %v", ErrTarget, p.Target, err)
		}
	case AttachKprobe, AttachKretprobe:
		if p.Target == "" {
			p.Target = ps.AttachTo
		}
		if err := need("target", p.Target, "do_unlinkat"); err != nil {
			return err
		}
		if !haveKprobes() {
			return m.errorf(key+".attach", "%w: %s needs a kernel built with CONFIG_KPROBES (no kprobe PMU or kprobe_events here)", ErrUnsupported, p.Attach)
		}
		if !kernelSymbol(p.Target) {
			return m.errorf(key+".target", "%w: kernel function %q is not in /proc/kallsyms", ErrTarget, p.Target)
		}
	case AttachFentry, AttachFexit, AttachFmodRet, AttachLSM:
		if p.Target == "" {
			p.Target = ps.AttachTo
		}
		if err := need("target", p.Target, "do_unlinkat"); err != nil {
			return err
		}
		name := p.Target
		if p.Attach == AttachLSM {
			name = "bpf_lsm_" + name
		}
		if err := btfFunc(name); err != nil {
			return m.errorf(key+".target", "%w: %v", ErrTarget, err)
		}
	case AttachCgroup:
		if err := need("cgroup", p.Cgroup, "/sys/fs/cgroup"); err != nil {
			return err
		}
		var st unix.Statfs_t
		if err := unix.Statfs(p.Cgroup, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			return m.errorf(key+".cgroup", "%w: %s is not a cgroup v2 directory", ErrTarget, p.Cgroup)
		}
	case AttachIter:
		if ps.AttachTo == "" {
			return m.errorf(key+".attach", "iterator %s names no target in its section (want iter/TARGET)", p.Name)
		}
		if p.Target != "" && p.Target != ps.AttachTo {
			return m.errorf(key+".target", "an iterator's target comes from its section (%s)", ps.AttachTo)
		}
		p.Target = ps.AttachTo
	}
	if p.Target != "" && (p.Attach == AttachFentry || p.Attach == AttachFexit || p.Attach == AttachFmodRet || p.Attach == AttachLSM) {
		ps.AttachTo = p.Target
	}
	return nil
}

func joinKinds() string {
	s := make([]string, len(attachKinds))
	for i, k := range attachKinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func tracepointExists(target string) error {
	group, name, ok := strings.Cut(target, "/")
	if !ok || group == "" || name == "" {
		return errors.New("want GROUP/NAME, e.g. syscalls/sys_enter_openat")
	}
	for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(filepath.Join(root, "events", group, name, "id")); err == nil {
			return nil
		}
	}
	return errors.New("not in tracefs events (is tracefs mounted on /sys/kernel/tracing?)")
}

var (
	kallsymsOnce sync.Once
	kallsyms     map[string]bool
)

func kernelSymbol(name string) bool {
	kallsymsOnce.Do(func() {
		kallsyms = map[string]bool{}
		data, err := os.ReadFile("/proc/kallsyms")
		if err != nil {
			return
		}
		for line := range strings.Lines(string(data)) {
			f := strings.Fields(line)
			if len(f) >= 3 {
				kallsyms[f[2]] = true
			}
		}
	})
	return kallsyms[name]
}

func haveKprobes() bool {
	for _, p := range []string{"/sys/bus/event_source/devices/kprobe/type", "/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func btfFunc(name string) error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("kernel BTF: %w", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName(name, &fn); err != nil {
		return fmt.Errorf("kernel function %q not found in BTF", name)
	}
	return nil
}

// updatable says whether an existing link of this hook can take a new
// program in place (BPF_LINK_UPDATE) instead of being attached anew.
func updatable(a Attach) bool {
	return a == AttachXDP || a == AttachTCX || a == AttachCgroup
}

// sameTarget says whether an existing link is attached where p wants.
func sameTarget(p *Program, info *link.Info) bool {
	switch p.Attach {
	case AttachXDP:
		ifi, err := net.InterfaceByName(p.Interface)
		return err == nil && info.XDP() != nil && info.XDP().Ifindex == uint32(ifi.Index)
	case AttachTCX:
		ifi, err := net.InterfaceByName(p.Interface)
		want := ebpf.AttachTCXIngress
		if p.Direction == "egress" {
			want = ebpf.AttachTCXEgress
		}
		return err == nil && info.TCX() != nil && info.TCX().Ifindex == uint32(ifi.Index) &&
			ebpf.AttachType(info.TCX().AttachType) == want
	case AttachCgroup:
		var st unix.Stat_t
		if unix.Stat(p.Cgroup, &st) != nil || info.Cgroup() == nil {
			return false
		}
		return info.Cgroup().CgroupId == st.Ino
	}
	return false
}

// How long attach waits for an XDP link the kernel is still releasing.
const (
	xdpBusyTries = 40
	xdpBusyWait  = 25 * time.Millisecond
)

// attach attaches prog as p says.
func attach(p *Program, ps *ebpf.ProgramSpec, prog *ebpf.Program) (link.Link, error) {
	switch p.Attach {
	case AttachXDP:
		ifi, err := net.InterfaceByName(p.Interface)
		if err != nil {
			return nil, err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index})
		// Apply detaches the links it discards before it unpins them, but a
		// link whose pin someone else just removed (bpfgate unpin, rm) is
		// released after an RCU grace period and a work item, and holds the
		// device until then.
		for try := 0; try < xdpBusyTries && (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST)); try++ {
			time.Sleep(xdpBusyWait)
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index})
		}
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("%s already has an XDP program that is not this object's (bpftool net show dev %s shows it: "+
				"ip link set dev %s xdp off detaches one attached without a link; a link goes when its pin is removed and its owner closes it): %w",
				p.Interface, p.Interface, p.Interface, err)
		}
		return l, err
	case AttachTCX:
		ifi, err := net.InterfaceByName(p.Interface)
		if err != nil {
			return nil, err
		}
		at := ebpf.AttachTCXIngress
		if p.Direction == "egress" {
			at = ebpf.AttachTCXEgress
		}
		return link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: prog, Attach: at})
	case AttachTracepoint:
		group, name, _ := strings.Cut(p.Target, "/")
		return link.Tracepoint(group, name, prog, nil)
	case AttachKprobe:
		return link.Kprobe(p.Target, prog, nil)
	case AttachKretprobe:
		return link.Kretprobe(p.Target, prog, nil)
	case AttachFentry, AttachFexit, AttachFmodRet:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case AttachLSM:
		return link.AttachLSM(link.LSMOptions{Program: prog})
	case AttachCgroup:
		return link.AttachCgroup(link.CgroupOptions{Path: p.Cgroup, Attach: ps.AttachType, Program: prog})
	case AttachIter:
		return link.AttachIter(link.IterOptions{Program: prog})
	}
	return nil, fmt.Errorf("unknown hook %q", p.Attach)
}
