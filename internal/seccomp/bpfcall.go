package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrArch means bpfgate cannot evaluate filters for the machine it runs on:
// it knows bpf(2)'s number and audit architecture on x86_64 only.
var ErrArch = errors.New("seccomp filters are evaluated on x86_64 only")

// x86_64's bpf(2) as a filter sees it.
const (
	nrBPFx86_64    = 321
	auditArchX8664 = unix.AUDIT_ARCH_X86_64
)

// Cmd is a bpf(2) command a filter may treat differently from the others.
type Cmd struct {
	Name  string
	Value uint32
}

// Cmds are the bpf(2) commands a token user needs, in enum bpf_cmd order:
// those that create objects (and take a token), token creation itself,
// the map operations libbpf and the tools make (libbpf freezes every
// .rodata map), attachment and detachment by every path the built-in
// profiles allow (raw_tracepoint_open, iterators), test runs, and pinning.
// The commands that need CAP_SYS_ADMIN in the initial user namespace (the
// *_get_fd_by_id and *_get_next_id ones) are left out: no token helps them.
var Cmds = []Cmd{
	{"map_create", 0}, {"map_lookup_elem", 1}, {"map_update_elem", 2},
	{"map_delete_elem", 3}, {"map_get_next_key", 4},
	{"prog_load", 5}, {"obj_pin", 6}, {"obj_get", 7}, {"prog_attach", 8},
	{"prog_detach", 9}, {"prog_test_run", 10},
	{"obj_get_info_by_fd", 15}, {"prog_query", 16}, {"raw_tracepoint_open", 17},
	{"btf_load", 18}, {"map_lookup_and_delete_elem", 21}, {"map_freeze", 22},
	{"link_create", 28}, {"link_update", 29}, {"iter_create", 33},
	{"link_detach", 34}, {"prog_bind_map", 35}, {"token_create", 36},
}

// Verdict is what happens to one bpf(2) command.
type Verdict struct {
	Cmd    string `json:"cmd,omitempty"` // empty: every command alike
	Action Action `json:"-"`
	Result string `json:"result"`
}

// BPFVerdicts says what a set of filters does to bpf(2).
type BPFVerdicts struct {
	// Filters is the number of filters evaluated.
	Filters int `json:"filters"`
	// ByCmd is set when some filter looks at the arguments: then there is
	// a verdict per command of Cmds, else a single one.
	ByCmd    bool      `json:"by_cmd"`
	Verdicts []Verdict `json:"verdicts"`
}

// Allowed reports whether every command reaches the kernel.
func (v *BPFVerdicts) Allowed() bool {
	for _, x := range v.Verdicts {
		if !x.Action.Allows() {
			return false
		}
	}
	return true
}

// Blocked lists the verdicts that do not reach the kernel.
func (v *BPFVerdicts) Blocked() []Verdict {
	var out []Verdict
	for _, x := range v.Verdicts {
		if !x.Action.Allows() {
			out = append(out, x)
		}
	}
	return out
}

// String sums the verdicts up: "allow", or what happens to which command.
func (v *BPFVerdicts) String() string {
	if len(v.Verdicts) == 1 && v.Verdicts[0].Cmd == "" {
		return v.Verdicts[0].Result
	}
	// Group the commands by result, in Cmds order.
	var order []string
	by := map[string][]string{}
	for _, x := range v.Verdicts {
		if _, ok := by[x.Result]; !ok {
			order = append(order, x.Result)
		}
		by[x.Result] = append(by[x.Result], x.Cmd)
	}
	if len(order) == 1 {
		return order[0] + " (every command)"
	}
	parts := make([]string, 0, len(order))
	for _, r := range order {
		parts = append(parts, r+": "+strings.Join(by[r], ", "))
	}
	return strings.Join(parts, "; ")
}

// BPFData is the seccomp_data of a bpf(2) call with command cmd on x86_64.
// The attr pointer and size are plausible values; no filter bpfgate knows
// looks at them.
func BPFData(cmd uint32) *Data {
	return &Data{Nr: nrBPFx86_64, Arch: auditArchX8664, IP: 0x7f0000001000,
		Args: [6]uint64{uint64(cmd), 0x7ffc00001000, 144}}
}

// EvalBPF runs filters (in the order they were installed) for bpf(2) and
// combines their actions as the kernel does. When a filter looks at the
// arguments, each command of Cmds is evaluated on its own.
func EvalBPF(filters []*Filter) (*BPFVerdicts, error) {
	if runtime.GOARCH != "amd64" {
		return nil, ErrArch
	}
	out := &BPFVerdicts{Filters: len(filters)}
	for _, f := range filters {
		if f.ReadsArgs() {
			out.ByCmd = true
		}
	}
	eval := func(cmd uint32) Action {
		res := make([]Action, len(filters))
		d := BPFData(cmd)
		for i, f := range filters {
			res[i] = f.Run(d)
		}
		return Combine(res)
	}
	if !out.ByCmd {
		a := eval(0)
		out.Verdicts = []Verdict{{Action: a, Result: a.String()}}
		return out, nil
	}
	for _, c := range Cmds {
		a := eval(c.Value)
		out.Verdicts = append(out.Verdicts, Verdict{Cmd: c.Name, Action: a, Result: a.String()})
	}
	return out, nil
}

// RunSyscall evaluates filters for any system call: nr and args as given,
// x86_64's audit architecture. For tests and for the curious.
func RunSyscall(filters []*Filter, nr int32, args ...uint64) Action {
	d := &Data{Nr: nr, Arch: auditArchX8664}
	copy(d.Args[:], args)
	res := make([]Action, len(filters))
	for i, f := range filters {
		res[i] = f.Run(d)
	}
	return Combine(res)
}

// describe names a filter count for messages.
func describe(n int) string {
	if n == 1 {
		return "1 filter"
	}
	return fmt.Sprintf("%d filters", n)
}
