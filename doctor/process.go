package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/internal/seccomp"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/ocihook"
)

// Bounds on what is read of a process.
const (
	maxMountinfo = 16 << 20
	maxStatus    = 64 << 10
)

// proc is what the checks know of the process.
type proc struct {
	p      *launch.Process
	status map[string]string
	mounts []*mountinfo.Info
	userns *os.File // its user namespace
	hostNS bool     // that is the initial user namespace
	// The bpffs the token would come from.
	bpffs *bpffs.Info
}

// openProc opens /proc/PID/name and confirms it belongs to p.
func openProc(p *launch.Process, name string) (*os.File, error) {
	path := "/proc/" + strconv.Itoa(p.Pid()) + "/" + name
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pid %d: %w", p.Pid(), launch.ErrProcessGone)
		}
		return nil, err
	}
	if err := p.Alive(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readProc reads at most limit bytes of /proc/PID/name, and confirms
// afterwards that it was p's.
func readProc(p *launch.Process, name string, limit int64) ([]byte, error) {
	f, err := openProc(p, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := boundedio.ReadAll(f, limit, f.Name())
	if err != nil {
		return nil, err
	}
	return data, p.Alive()
}

func parseStatus(data []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// load reads what every check needs.
func load(p *launch.Process, names *delegate.Names) (*proc, error) {
	pr := &proc{p: p}
	data, err := readProc(p, "status", maxStatus)
	if err != nil {
		return nil, err
	}
	pr.status = parseStatus(data)
	data, err = readProc(p, "mountinfo", maxMountinfo)
	if err != nil {
		return nil, err
	}
	if pr.mounts, err = mountinfo.GetMountsFromReader(bytes.NewReader(data), nil); err != nil {
		return nil, fmt.Errorf("pid %d: mountinfo: %w", p.Pid(), err)
	}
	if pr.userns, err = openProc(p, "ns/user"); err != nil {
		return nil, err
	}
	// The initial user namespace has no parent.
	parent, err := unix.IoctlRetInt(int(pr.userns.Fd()), unix.NS_GET_PARENT)
	switch {
	case err == nil:
		unix.Close(parent)
	case errors.Is(err, unix.EPERM):
		pr.hostNS = true
	default:
		return nil, fmt.Errorf("pid %d: user namespace: %w", p.Pid(), err)
	}
	return pr, nil
}

func (pr *proc) close() {
	if pr.userns != nil {
		pr.userns.Close()
	}
}

func processChecks(r *Report, p *launch.Process, opts *Options) error {
	pr, err := load(p, opts.Names)
	if err != nil {
		return err
	}
	defer pr.close()
	names := opts.Names
	r.add(pr.checkBPFFS(names, opts))
	if pr.bpffs != nil {
		d := pr.bpffs.Delegation
		r.Delegation, r.BPFFS = &d, pr.bpffs.Path
	}
	r.add(pr.checkToken(opts))
	r.add(pr.checkCaps(names, opts))
	r.add(pr.checkUserNS(opts))
	r.add(pr.checkSeccomp(opts))
	if opts.Spec != nil {
		r.add(checkSeccompConfig(opts))
	}
	r.add(pr.checkCgroup(names))
	r.add(checkSocketFilter(names, r.Delegation))
	r.add(checkPerf(names, r.Delegation))
	return nil
}

// printable quotes a path the process chose (a mount point) when it holds
// control characters or is not UTF-8, so that it cannot write escape
// sequences to a terminal.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

// delegationText prints a delegation by the kernel's names.
func delegationText(names *delegate.Names, s delegate.Set) string {
	if t := names.FormatOptions(s); t != "" {
		return t
	}
	return "nothing delegated"
}

// caller is what made the container's config.json (its annotations
// tell): fixes are given in its terms, as the OCI hook's refusals are.
func (o *Options) caller() ocihook.Caller {
	return ocihook.CallerOf(o.Spec.Annotations)
}

// howToMount says how to start a process with a delegated bpffs.
func (o *Options) howToMount() string {
	if o.Spec != nil {
		switch o.caller() {
		case ocihook.Kubernetes:
			return "give the pod a bpfgate device: resources.limits bpfgate.dev/bpf-PROFILE: 1 (device plugin) or a claim on the bpfgate-PROFILE DeviceClass (DRA), see docs/kubernetes.md"
		case ocihook.Runc:
			return "in config.json, add bpfgate's hook to hooks.createRuntime: bpfgate oci-hook --profile PROFILE (what the CDI device bpfgate.dev/bpf=PROFILE adds), see docs/containers.md"
		}
		return "give the container a bpfgate device (podman run --device bpfgate.dev/bpf=PROFILE, see docs/containers.md)"
	}
	return "start it with `bpfgate run --profile PROFILE -- CMD` (or --cmds/--maps/--progs/--attachs), which mounts a delegated bpffs at /sys/fs/bpf"
}

func (pr *proc) checkBPFFS(names *delegate.Names, o *Options) Finding {
	f := Finding{Check: CheckBPFFS}
	var seen []string
	var first *bpffs.Info
	for _, m := range pr.mounts {
		if m.FSType != "bpf" {
			continue
		}
		in, err := bpffs.ParseInfo(m, names)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: %v", printable(m.Mountpoint), err))
			continue
		}
		seen = append(seen, printable(in.Path)+": "+delegationText(names, in.Delegation))
		if in.Delegation.IsZero() {
			continue
		}
		if first == nil || in.Path == delegate.DefaultPath && first.Path != delegate.DefaultPath {
			c := in
			first = &c
		}
	}
	pr.bpffs = first
	switch {
	case len(seen) == 0:
		f.Status, f.Seen = Fail, "the process sees no bpffs: a token comes from a bpffs mounted with delegate_* options"
		f.Fix = o.howToMount()
	case first == nil:
		f.Status, f.Seen = Fail, "no bpffs it sees delegates anything: "+strings.Join(seen, "; ")
		f.Fix = "a bpffs without delegate_* options yields no token (ENOENT): " + o.howToMount()
	default:
		f.Status, f.Seen = OK, strings.Join(seen, "; ")
		if len(seen) > 1 {
			f.Seen += " (the token comes from " + printable(first.Path) + ")"
		}
	}
	return f
}

func (pr *proc) checkToken(o *Options) Finding {
	f := Finding{Check: CheckToken}
	switch {
	case pr.hostNS:
		f.Status, f.Seen = Fail, "the process is in the host's user namespace: BPF_TOKEN_CREATE refuses there (EOPNOTSUPP)"
		f.Fix = "see " + CheckUserNS
		return f
	case pr.bpffs == nil:
		f.Status, f.Seen = Fail, "no delegated bpffs to create a token from"
		f.Fix = "see " + CheckBPFFS
		return f
	}
	mnt, st, err := openBounded(pr.p, pr.bpffs.Path, o.Timeout)
	if err != nil {
		f.Status, f.Seen = Warn, fmt.Sprintf("cannot open %s as the process sees it: %v", printable(pr.bpffs.Path), err)
		return f
	}
	defer mnt.Close()
	if st.Mnt_id != uint64(pr.bpffs.ID) {
		f.Status, f.Seen = Warn, fmt.Sprintf("%s is hidden by another mount in the process's view", printable(pr.bpffs.Path))
		f.Fix = "mount the delegated bpffs where nothing covers it"
		return f
	}
	switch err := bpffs.CheckOwner(mnt, pr.userns, o.Timeout); {
	case err == nil:
		f.Status, f.Seen = OK, fmt.Sprintf("the kernel creates a token from %s in the process's user namespace (with CAP_BPF there)", printable(pr.bpffs.Path))
	case errors.Is(err, bpffs.ErrWrongOwner):
		f.Status = Fail
		f.Seen = fmt.Sprintf("%s belongs to another user namespace: BPF_TOKEN_CREATE fails with EPERM", printable(pr.bpffs.Path))
		f.Fix = "the bpffs must be created (fsopen) from the process's own user namespace, as bpfgate run and the OCI hook do; " + o.howToMount()
	default:
		f.Status, f.Seen = Warn, fmt.Sprintf("could not ask the kernel: %v", err)
	}
	return f
}

// errNoAnswer means a path the process chose did not resolve in time.
var errNoAnswer = errors.New("the process's filesystem did not answer")

// openBounded opens dir as p sees it, and its mount id, within timeout.
// The path is the process's: a filesystem it serves itself (FUSE) on the
// way can hold the lookup as long as it likes. Then the lookup is left to
// finish, or fail, on a goroutine of its own, and what it opens is closed.
func openBounded(p *launch.Process, dir string, timeout time.Duration) (*os.File, *unix.Statx_t, error) {
	type opened struct {
		f   *os.File
		st  unix.Statx_t
		err error
	}
	done := make(chan opened, 1)
	go func() {
		var o opened
		o.f, o.err = p.OpenInRoot(dir)
		if o.err == nil {
			if o.err = unix.Statx(int(o.f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &o.st); o.err != nil {
				o.f.Close()
				o.f = nil
			}
		}
		done <- o
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case o := <-done:
		return o.f, &o.st, o.err
	case <-timer.C:
		go func() {
			if o := <-done; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, nil, fmt.Errorf("%w within %v (is a FUSE filesystem it serves on the path?)", errNoAnswer, timeout)
	}
}

// capSet parses a hex capability mask of /proc/PID/status.
func capSet(v string) (uint64, bool) {
	n, err := strconv.ParseUint(v, 16, 64)
	return n, err == nil
}

func (pr *proc) checkCaps(names *delegate.Names, o *Options) Finding {
	f := Finding{Check: CheckCaps}
	eff, ok1 := capSet(pr.status["CapEff"])
	bnd, ok2 := capSet(pr.status["CapBnd"])
	if !ok1 || !ok2 {
		f.Status, f.Seen = Warn, "cannot read CapEff/CapBnd from /proc/PID/status"
		return f
	}
	need := []delegate.Cap{unix.CAP_BPF}
	if pr.bpffs != nil {
		need = delegate.CapsFor(names, pr.bpffs.Delegation)
	}
	var have, notEff []string
	var notBnd []delegate.Cap
	for _, c := range need {
		bit := uint64(1) << uint(c)
		switch {
		case eff&bit != 0:
			have = append(have, c.String())
		case bnd&bit != 0:
			notEff = append(notEff, c.String())
		default:
			notBnd = append(notBnd, c)
		}
	}
	where := "in its user namespace"
	if pr.hostNS {
		where = "in the host's user namespace"
	}
	f.Seen = fmt.Sprintf("needs %s %s", joinCaps(need), where)
	if len(have) > 0 {
		f.Seen += "; effective: " + strings.Join(have, ", ")
	}
	switch {
	case len(notBnd) > 0:
		f.Status = Fail
		f.Seen += "; not even in its bounding set: " + joinCaps(notBnd)
		if o.Spec != nil {
			f.Fix = o.caller().CapsFix(capNames(notBnd))
		} else {
			f.Fix = "start it with bpfgate run, which keeps what the delegation needs (or --caps " + strings.ToLower(joinCaps(need)) + ")"
		}
	case len(notEff) > 0:
		f.Status = Fail
		f.Seen += "; in its bounding set but not effective: " + strings.Join(notEff, ", ")
		f.Fix = "run it as root of its user namespace (uid 0 there), or give it the capabilities as ambient ones (capsh --addamb, or the runtime's ambient set)"
	default:
		f.Status = OK
	}
	return f
}

// capNames are the names of caps, as config.json writes them.
func capNames(cs []delegate.Cap) []string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return s
}

func joinCaps(cs []delegate.Cap) string { return strings.Join(capNames(cs), ", ") }

func (pr *proc) checkUserNS(o *Options) Finding {
	f := Finding{Check: CheckUserNS}
	if pr.hostNS {
		f.Status, f.Seen = Fail, "the process shares the host's user namespace: a token comes only from a bpffs a non-initial user namespace owns"
		if o.Spec != nil {
			f.Fix = o.caller().UserNSFix()
		} else {
			f.Fix = "start it with bpfgate run, which gives it a user namespace of its own"
		}
		return f
	}
	f.Status = OK
	f.Seen = "a user namespace of its own"
	if data, err := readProc(pr.p, "uid_map", 4096); err == nil {
		if fields := strings.Fields(string(data)); len(fields) >= 3 {
			f.Seen += fmt.Sprintf(" (uid %s is host uid %s, %s ids)", fields[0], fields[1], fields[2])
		}
	}
	return f
}

func (o *Options) seccompFix() string {
	if o.Spec != nil {
		return o.caller().SeccompFix()
	}
	return "the filter comes from whatever started the process (its runtime, systemd's SystemCallFilter=, a launcher): let bpf(2) through there; bpfgate run's own filter allows it"
}

func (pr *proc) checkSeccomp(o *Options) Finding {
	f := Finding{Check: CheckSeccomp}
	mode := pr.status["Seccomp"]
	switch mode {
	case "0":
		f.Status, f.Seen = OK, "no seccomp filter"
		return f
	case "1":
		f.Status, f.Seen = Fail, "strict seccomp mode: only read, write, exit and sigreturn"
		f.Fix = "do not run it under strict seccomp"
		return f
	case "2":
	default:
		f.Status, f.Seen = Warn, "unknown seccomp mode "+strconv.Quote(mode)
		return f
	}
	filters, err := seccomp.ReadFilters(pr.p, o.Timeout)
	if err != nil {
		f.Status = Warn
		f.Seen = fmt.Sprintf("filter mode (%s filters); could not read them: %v", pr.status["Seccomp_filters"], err)
		return f
	}
	v, err := seccomp.EvalBPF(filters)
	if err != nil {
		f.Status, f.Seen = Warn, fmt.Sprintf("%d filters: %v", len(filters), err)
		return f
	}
	f.Seen = fmt.Sprintf("%d filter(s), read from the process: bpf(2) would %s", len(filters), v)
	allowed := v.Allowed()
	if !allowed && o.recording {
		// The notifications are the recorder's, installed last: it lets
		// every call continue, so only what the other filters do counts.
		allowed = true
		for _, x := range v.Blocked() {
			allowed = allowed && x.Action == seccomp.UserNotif
		}
		if allowed {
			f.Seen += " (the user notifications go to bpfgate's own recorder, which lets every call continue)"
		}
	}
	if allowed {
		f.Status = OK
	} else {
		f.Status = Fail
		f.Fix = o.seccompFix()
	}
	return f
}

func checkSeccompConfig(o *Options) Finding {
	f := Finding{Check: CheckSeccompConfig}
	var sc *specs.LinuxSeccomp
	if o.Spec.Linux != nil {
		sc = o.Spec.Linux.Seccomp
	}
	res, err := seccomp.EvalOCI(sc)
	if err != nil {
		f.Status, f.Seen = Warn, "config.json linux.seccomp: "+err.Error()
		return f
	}
	f.Seen = "config.json linux.seccomp: bpf(2) would " + res.String()
	if len(res.Rules) > 0 {
		f.Seen += "; rules naming bpf: " + strings.Join(res.Rules, "; ")
	}
	if len(res.Unknown) > 0 {
		f.Seen += "; conditions bpfgate cannot judge: " + strings.Join(res.Unknown, ", ")
	}
	if res.Allowed() {
		f.Status = OK
	} else {
		f.Status, f.Fix = Fail, o.seccompFix()
	}
	return f
}

// cgroupProgs are the program types that attach to a cgroup.
var cgroupProgs = []string{"cgroup_skb", "cgroup_sock", "cgroup_device", "sock_ops",
	"cgroup_sock_addr", "cgroup_sysctl", "cgroup_sockopt"}

func has(names *delegate.Names, s *delegate.Set, k delegate.Kind, list ...string) []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, n := range list {
		if v, ok := names.Lookup(k, n); ok && s.Has(k, v) {
			out = append(out, n)
		}
	}
	return out
}

func (pr *proc) checkCgroup(names *delegate.Names) Finding {
	f := Finding{Check: CheckCgroup}
	var deleg *delegate.Set
	if pr.bpffs != nil {
		deleg = &pr.bpffs.Delegation
	}
	progs := has(names, deleg, delegate.Progs, cgroupProgs...)
	var cg2 []string
	for _, m := range pr.mounts {
		if m.FSType == "cgroup2" {
			cg2 = append(cg2, printable(m.Mountpoint))
		}
	}
	switch {
	case len(progs) == 0:
		f.Status, f.Seen = OK, "no cgroup program type delegated"
		if len(cg2) > 0 {
			f.Seen += "; cgroup2 at " + strings.Join(cg2, ", ")
		}
	case len(cg2) == 0:
		f.Status = Warn
		f.Seen = "delegated " + strings.Join(progs, ", ") + ", but the process sees no cgroup2 mount to attach them to"
		f.Fix = "cgroup programs attach to a cgroup v2 directory the process can open: mount its own cgroup (bpfgate run mounts the workload's cgroup at /sys/fs/cgroup; podman gives containers one only on a cgroup v2 host)"
	default:
		f.Status, f.Seen = OK, "delegated "+strings.Join(progs, ", ")+"; cgroup2 at "+strings.Join(cg2, ", ")
	}
	return f
}

func checkSocketFilter(names *delegate.Names, d *delegate.Set) Finding {
	f := Finding{Check: CheckSocketFilter}
	if d == nil || len(has(names, d, delegate.Cmds, "prog_load")) == 0 {
		f.Status, f.Seen = OK, "prog_load is not delegated"
		return f
	}
	sf := len(has(names, d, delegate.Progs, "socket_filter")) > 0
	ingress := len(has(names, d, delegate.Attachs, "cgroup_inet_ingress")) > 0
	const trap = "libbpf's feature probes load a socket filter with the token; when that fails libbpf skips .rodata/.bss and every object with global data fails with \"fd N is not pointing to valid bpf_map\""
	switch {
	case sf && ingress:
		f.Status, f.Seen = OK, "socket_filter and cgroup_inet_ingress are delegated: libbpf's feature probes pass"
	case sf:
		f.Status = Fail
		f.Seen = "socket_filter is delegated without cgroup_inet_ingress: the kernel checks the expected attach type too, which is 0 (cgroup_inet_ingress) for a socket filter, so every socket filter is refused; " + trap
		f.Fix = "add --attachs cgroup_inet_ingress (profile: attachs: [cgroup_inet_ingress])"
	default:
		f.Status = Warn
		f.Seen = "socket_filter is not delegated: " + trap + " (cilium/ebpf programs are not affected)"
		f.Fix = "for libbpf programs add --progs socket_filter --attachs cgroup_inet_ingress (profile: progs: [socket_filter], attachs: [cgroup_inet_ingress])"
	}
	return f
}

// perfProgs and perfMaps attach or work only through perf_event_open,
// which ignores tokens.
var (
	perfProgs = []string{"kprobe", "tracepoint", "perf_event"}
	perfMaps  = []string{"perf_event_array"}
)

func checkPerf(names *delegate.Names, d *delegate.Set) Finding {
	f := Finding{Check: CheckPerf}
	got := append(has(names, d, delegate.Progs, perfProgs...), has(names, d, delegate.Maps, perfMaps...)...)
	const never = "no token allows perf_event_open: kprobe, tracepoint and uprobe attachment through it, and perf buffers, need CAP_PERFMON (or CAP_SYS_ADMIN) in the initial user namespace, and tracefs is root-only"
	if len(got) == 0 {
		f.Status, f.Seen = OK, "nothing perf-event based delegated ("+never+")"
		return f
	}
	f.Status = Warn
	f.Seen = "delegated " + strings.Join(got, ", ") + ", but " + never
	f.Fix = "use what works under a token: raw_tp and tp_btf programs (--progs raw_tracepoint,tracing), uprobe_multi links, ring buffers (--maps ringbuf) instead of perf buffers"
	return f
}
