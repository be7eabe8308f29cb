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

// condRule is a rule with conditions, ready to be evaluated.
type condRule struct {
	act   Action
	args  []specs.LinuxSeccompArg
	split bool // two conditions on one argument: each is a rule of its own
}

// matches says whether the rule applies to a call with first argument
// arg0. As runc does, the conditions of a rule all have to hold, except
// when two of them test the same argument: then each is a rule of its own.
// A condition bpfgate cannot judge is taken the pessimistic way: it holds
// for a rule that does not allow the call, and fails for one that does.
func (r *condRule) matches(arg0 uint64) bool {
	all, some := true, false
	for _, a := range r.args {
		m, known := matchArg(a, arg0)
		if !known {
			m = !r.act.Allows()
		}
		all = all && m
		some = some || m
	}
	if r.split {
		return some
	}
	return all
}

// ociRules are the rules of a seccomp section for one system call, as
// libseccomp merges them (see OCIAction).
type ociRules struct {
	def        Action
	uncond     Action
	haveUncond bool
	cond       []condRule
	// rules counts the rules naming the call; unknown lists the
	// conditions bpfgate cannot judge, at most maxQuoted, and more counts
	// the others.
	rules   int
	named   []specs.LinuxSyscall // the first maxQuoted rules naming it
	unknown []string
	more    int
}

func compileOCI(s *specs.LinuxSeccomp, name string) (*ociRules, error) {
	def, err := ociAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	out := &ociRules{def: def}
	seen := map[string]bool{}
	for i, r := range s.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		act, err := ociAction(r.Action, r.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		var idx [6]bool
		split := false
		for j, a := range r.Args {
			if err := checkArg(a); err != nil {
				return nil, fmt.Errorf("syscalls[%d].args[%d]: %w", i, j, err)
			}
			split = split || idx[a.Index]
			idx[a.Index] = true
		}
		if out.rules++; out.rules <= maxQuoted {
			out.named = append(out.named, r)
		}
		switch {
		case act == def:
			// runc leaves out rules that do what the default does.
		case len(r.Args) == 0:
			if !out.haveUncond {
				out.uncond, out.haveUncond = act, true
			}
		default:
			out.cond = append(out.cond, condRule{act: act, args: r.Args, split: split})
			for _, a := range r.Args {
				if a.Index == 0 {
					continue
				}
				u := fmt.Sprintf("arg%d %s %#x", a.Index, a.Op, a.Value)
				switch {
				case seen[u]:
				case len(seen) < maxQuoted:
					out.unknown = append(out.unknown, u)
				default:
					out.more++
				}
				seen[u] = true
			}
		}
	}
	return out, nil
}

// decide says what happens to a call with first argument arg0; ambiguous
// is set when rules with conditions that disagree match it.
func (o *ociRules) decide(arg0 uint64) (a Action, ambiguous bool) {
	if o.haveUncond {
		return o.uncond, false
	}
	found := false
	for i := range o.cond {
		r := &o.cond[i]
		if !r.matches(arg0) {
			continue
		}
		switch {
		case !found:
			a, found = r.act, true
		case r.act != a:
			ambiguous = true
			if r.act.Stricter(a) {
				a = r.act
			}
		}
	}
	if !found {
		return o.def, false
	}
	return a, ambiguous
}

func ambiguity(name string, arg0 uint64) string {
	return fmt.Sprintf("rules with conditions that disagree about %s(%#x, ...): libseccomp's merge decides, taken as the strictest", name, arg0)
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
	rules, err := compileOCI(s, "bpf")
	if err != nil {
		return nil, err
	}
	for _, r := range rules.named {
		out.Rules = append(out.Rules, describeRule(r))
		out.ByCmd = out.ByCmd || len(r.Args) > 0
	}
	if rules.rules > maxQuoted {
		out.Rules = append(out.Rules, fmt.Sprintf("and %d more", rules.rules-maxQuoted))
		// The rules not quoted can have conditions too.
		out.ByCmd = out.ByCmd || len(rules.cond) > 0
	}
	out.Filters = 1
	out.Unknown = slices.Clone(rules.unknown)
	if rules.haveUncond {
		out.Unknown = nil // the conditions do not count
	}
	eval := func(cmd uint32) Action {
		a, amb := rules.decide(uint64(cmd))
		if amb && len(out.Unknown) < maxQuoted {
			out.Unknown = append(out.Unknown, ambiguity("bpf", uint64(cmd)))
		}
		return a
	}
	if !out.ByCmd {
		a := eval(0)
		res := a.String()
		if rules.rules == 0 {
			res += " (defaultAction " + string(s.DefaultAction) + "; no rule names bpf)"
		}
		out.Verdicts = []Verdict{{Action: a, Result: res}}
	} else {
		for _, c := range Cmds {
			a := eval(c.Value)
			out.Verdicts = append(out.Verdicts, Verdict{Cmd: c.Name, Action: a, Result: a.String()})
		}
	}
	if rules.more > 0 && !rules.haveUncond {
		out.Unknown = append(out.Unknown, fmt.Sprintf("and %d more", rules.more))
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
	rules, err := compileOCI(s, name)
	if err != nil {
		return 0, nil, err
	}
	a, amb := rules.decide(arg0)
	if rules.haveUncond {
		return a, nil, nil
	}
	unknown = rules.unknown
	if amb {
		unknown = append(unknown, ambiguity(name, arg0))
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
