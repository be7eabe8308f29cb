package seccomp

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ProfilePath is where `bpfgate oci-hook seccomp` writes the containers
// seccomp profile that lets bpf(2) through with CAP_BPF.
const ProfilePath = "/etc/bpfgate/seccomp.json"

// Fix is how docs/containers.md tells podman users to let a container with
// CAP_BPF call bpf(2).
const Fix = "run the container with bpfgate's seccomp profile: write it with `bpfgate oci-hook seccomp` (" +
	ProfilePath + ") and pass `--security-opt seccomp=" + ProfilePath + "` to podman run, or make it the default with " +
	`seccomp_profile = "` + ProfilePath + `" under [containers] in containers.conf (see docs/containers.md)`

// OCIResult says what a container's OCI seccomp section does to bpf(2).
type OCIResult struct {
	BPFVerdicts
	// Confined is false when the container has no seccomp section at all.
	Confined bool `json:"confined"`
	// Rules are the rules that name bpf, as written.
	Rules []string `json:"rules,omitempty"`
	// Unknown notes conditions bpfgate cannot judge (on arguments other
	// than the command).
	Unknown []string `json:"unknown,omitempty"`
}

// ociAction turns a rule's action into an Action. errnoRet is the rule's
// errno (EPERM when not given, as runc and crun do).
func ociAction(a specs.LinuxSeccompAction, errnoRet *uint) (Action, error) {
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return KillThread, nil
	case specs.ActKillProcess:
		return KillProcess, nil
	case specs.ActTrap:
		return Trap, nil
	case specs.ActErrno:
		e := uint(unix.EPERM)
		if errnoRet != nil {
			e = *errnoRet
		}
		return Errno | Action(e&0xffff), nil
	case specs.ActTrace:
		// Without a tracer the call fails with ENOSYS.
		return Trace, nil
	case specs.ActAllow:
		return Allow, nil
	case specs.ActLog:
		return Log, nil
	case specs.ActNotify:
		return UserNotif, nil
	}
	return 0, fmt.Errorf("seccomp action %q: not one runc or crun knows", a)
}

// maxQuoted bounds how many rules and conditions an OCIResult quotes: a
// config.json of the size the OCI hook reads holds a hundred thousand.
const maxQuoted = 16

// checkArg refuses a condition runc and crun refuse (the container would
// not start): an argument index past the sixth, or an operator they do not
// know. Refused here, its operator is never printed.
func checkArg(c specs.LinuxSeccompArg) error {
	if c.Index > 5 {
		return fmt.Errorf("argument index %d: system calls have 6 arguments", c.Index)
	}
	switch c.Op {
	case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		return nil
	}
	return fmt.Errorf("seccomp operator %q: not one runc or crun knows", c.Op)
}

// matchArg evaluates one condition on the first argument, v; known is false
// for conditions on the other arguments, which depend on the call.
func matchArg(c specs.LinuxSeccompArg, v uint64) (match, known bool) {
	if c.Index != 0 {
		return false, false
	}
	switch c.Op {
	case specs.OpNotEqual:
		return v != c.Value, true
	case specs.OpLessThan:
		return v < c.Value, true
	case specs.OpLessEqual:
		return v <= c.Value, true
	case specs.OpEqualTo:
		return v == c.Value, true
	case specs.OpGreaterEqual:
		return v >= c.Value, true
	case specs.OpGreaterThan:
		return v > c.Value, true
	case specs.OpMaskedEqual:
		return v&c.Value == c.ValueTwo, true
	}
	return false, false
}

// ruleMatches says whether rule r applies to a call with first argument
// arg0. As
// runc does, the conditions of a rule all have to hold, except when two of
// them test the same argument: then each is a rule of its own. A condition
// bpfgate cannot judge is taken the pessimistic way: it holds for a rule
// that does not allow the call, and fails for one that does.
func ruleMatches(r specs.LinuxSyscall, allows bool, arg0 uint64) (match bool, unknown []string) {
	if len(r.Args) == 0 {
		return true, nil
	}
	seen := map[uint]bool{}
	split := false
	for _, a := range r.Args {
		if seen[a.Index] {
			split = true
		}
		seen[a.Index] = true
	}
	all, some := true, false
	for _, a := range r.Args {
		m, known := matchArg(a, arg0)
		if !known {
			unknown = append(unknown, fmt.Sprintf("arg%d %s %#x", a.Index, a.Op, a.Value))
			m = !allows
		}
		all = all && m
		some = some || m
	}
	if split {
		return some, unknown
	}
	return all, unknown
}

// EvalOCI says what the seccomp section of a container's config.json does to
// bpf(2) on x86_64, as runc builds the filter from it with libseccomp (see
// OCIAction), for each command of Cmds when a rule for bpf has conditions.
// A container without a seccomp section is not confined.
func EvalOCI(s *specs.LinuxSeccomp) (*OCIResult, error) {
	out := &OCIResult{}
	if s == nil {
		out.Verdicts = []Verdict{{Action: Allow, Result: "allow (no seccomp filter)"}}
		return out, nil
	}
	out.Confined = true
	if _, err := ociAction(s.DefaultAction, s.DefaultErrnoRet); err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	named, rules := false, 0
	for i, r := range s.Syscalls {
		if !slices.Contains(r.Names, "bpf") {
			continue
		}
		if _, err := ociAction(r.Action, r.ErrnoRet); err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		for j, a := range r.Args {
			if err := checkArg(a); err != nil {
				return nil, fmt.Errorf("syscalls[%d].args[%d]: %w", i, j, err)
			}
		}
		named = true
		if rules++; rules <= maxQuoted {
			out.Rules = append(out.Rules, describeRule(r))
		}
		if len(r.Args) > 0 {
			out.ByCmd = true
		}
	}
	if rules > maxQuoted {
		out.Rules = append(out.Rules, fmt.Sprintf("and %d more", rules-maxQuoted))
	}
	out.Filters = 1
	// Each command meets the same conditions: quote each once, in a set
	// (a list searched for each would take time squared in their number).
	seen := map[string]bool{}
	more := 0
	eval := func(cmd uint32) Action {
		a, unknown, _ := OCIAction(s, "bpf", uint64(cmd))
		for _, u := range unknown {
			switch {
			case seen[u]:
			case len(seen) < maxQuoted:
				out.Unknown = append(out.Unknown, u)
				seen[u] = true
			default:
				seen[u] = true
				more++
			}
		}
		return a
	}
	if !out.ByCmd {
		a := eval(0)
		res := a.String()
		if !named {
			res += " (defaultAction " + string(s.DefaultAction) + "; no rule names bpf)"
		}
		out.Verdicts = []Verdict{{Action: a, Result: res}}
	} else {
		for _, c := range Cmds {
			a := eval(c.Value)
			out.Verdicts = append(out.Verdicts, Verdict{Cmd: c.Name, Action: a, Result: a.String()})
		}
	}
	if more > 0 {
		out.Unknown = append(out.Unknown, fmt.Sprintf("and %d more", more))
	}
	return out, nil
}

// OCIAction says what a config.json seccomp section does to one call of
// system call name whose first argument is arg0, as libseccomp merges the
// rules runc and crun give it (testdata/libseccomp holds what it built):
//
//   - a rule that does what the default does is left out (by the runtime);
//   - the first rule without conditions decides, ahead of every rule with
//     conditions, whatever their order (podman's rendering of the default
//     profile allows setns in one rule and denies it in a later one, and
//     the filter allows it);
//   - else the rules with conditions that match decide when they agree; when
//     they disagree, libseccomp's decision tree picks one by the
//     conditions' kinds, not their order, which bpfgate does not model: the
//     strictest is taken, and unknown says so;
//   - else the default action.
//
// unknown also lists the conditions on arguments other than the first,
// which are taken the pessimistic way (holding for a rule that does not
// allow the call, failing for one that does).
func OCIAction(s *specs.LinuxSeccomp, name string, arg0 uint64) (a Action, unknown []string, err error) {
	if s == nil {
		return Allow, nil, nil
	}
	def, err := ociAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return 0, nil, fmt.Errorf("defaultAction: %w", err)
	}
	var (
		uncond     Action
		haveUncond bool
		matched    []Action
	)
	for i, r := range s.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		act, err := ociAction(r.Action, r.ErrnoRet)
		if err != nil {
			return 0, nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		for j, a := range r.Args {
			if err := checkArg(a); err != nil {
				return 0, nil, fmt.Errorf("syscalls[%d].args[%d]: %w", i, j, err)
			}
		}
		switch {
		case act == def:
			// runc leaves out rules that do what the default does.
		case len(r.Args) == 0:
			if !haveUncond {
				uncond, haveUncond = act, true
			}
		default:
			m, u := ruleMatches(r, act.Allows(), arg0)
			unknown = append(unknown, u...)
			if m {
				matched = append(matched, act)
			}
		}
	}
	switch {
	case haveUncond:
		return uncond, nil, nil
	case len(matched) == 0:
		return def, unknown, nil
	}
	a = matched[0]
	for _, m := range matched[1:] {
		if m != a {
			unknown = append(unknown, fmt.Sprintf("rules with conditions that disagree about %s(%#x, ...): libseccomp's merge decides, taken as the strictest", name, arg0))
			break
		}
	}
	for _, m := range matched[1:] {
		if m.Stricter(a) {
			a = m
		}
	}
	return a, unknown, nil
}

func describeRule(r specs.LinuxSyscall) string {
	s := string(r.Action)
	if r.ErrnoRet != nil {
		s += fmt.Sprintf(" errno %d", *r.ErrnoRet)
	}
	var conds []string
	for _, a := range r.Args {
		c := fmt.Sprintf("arg%d %s %#x", a.Index, a.Op, a.Value)
		if a.Op == specs.OpMaskedEqual {
			c += fmt.Sprintf(" %#x", a.ValueTwo)
		}
		conds = append(conds, c)
	}
	if len(conds) > 0 {
		s += " if " + strings.Join(conds, " and ")
	}
	return s
}
