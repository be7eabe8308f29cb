package doctor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bpfgate/bpfgate/delegate"
)

// Missing returns what used has and granted lacks.
func Missing(granted, used delegate.Set) delegate.Set {
	var m delegate.Set
	for _, k := range delegate.Kinds {
		m.SetMask(k, used.Mask(k)&^granted.Mask(k))
	}
	return m
}

// ProfileGap compares a delegation with what a workload used (from a
// recording of its bpf(2) calls) and names what was used but not delegated,
// with the flags of bpfgate run and the profile lines that add it, by the
// kernel's names (a bare decimal would be read as a mask). Capabilities the
// used types call for on top of the granted ones are named too.
func ProfileGap(names *delegate.Names, granted, used delegate.Set) Finding {
	f := Finding{Check: CheckGap}
	miss := Missing(granted, used)
	var newCaps []delegate.Cap
	have := delegate.CapsFor(names, granted)
	for _, c := range delegate.CapsFor(names, used) {
		if !slices.Contains(have, c) {
			newCaps = append(newCaps, c)
		}
	}
	if miss.IsZero() && len(newCaps) == 0 {
		f.Status, f.Seen = OK, "everything used was delegated ("+delegationText(names, granted)+")"
		return f
	}
	var seen, flags, lines []string
	for _, k := range delegate.Kinds {
		list, unnamed := names.Split(k, miss.Mask(k))
		if unnamed != 0 {
			list = append(list, fmt.Sprintf("0x%x", unnamed))
		}
		if len(list) == 0 {
			continue
		}
		seen = append(seen, k.String()+" "+strings.Join(list, ", "))
		flags = append(flags, "--"+k.String()+" "+strings.Join(list, ","))
		lines = append(lines, k.String()+": ["+strings.Join(list, ", ")+"]")
	}
	if len(newCaps) > 0 {
		seen = append(seen, "capabilities "+joinCaps(newCaps))
		lines = append(lines, "caps: ["+joinCaps(newCaps)+"]")
	}
	f.Status = Fail
	f.Seen = "used but not delegated: " + strings.Join(seen, "; ")
	f.Fix = "add to the delegation: " + strings.Join(flags, " ")
	if len(newCaps) > 0 {
		f.Fix += " (bpfgate run keeps the capabilities the delegated types need)"
	}
	f.Fix += "; in the profile (config.yaml), add to its lists: " + strings.Join(lines, ", ")
	return f
}
