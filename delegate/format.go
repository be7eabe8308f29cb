package delegate

import (
	"strconv"
	"strings"
)

// FormatMask prints mask m of kind k as the kernel's seq_print_delegate_opts
// does: unknown bits (at or above the enum's Max) are dropped, "any" when
// every known bit is set, otherwise lower-case names joined by ':' in enum
// order, followed by any remaining named-less bits in hex. An empty mask
// prints as "".
func (n *Names) FormatMask(k Kind, m uint64) string {
	e := &n.Enums[k]
	m &= e.Any()
	if m == 0 {
		return ""
	}
	if m == e.Any() {
		return "any"
	}
	var b strings.Builder
	pfx := len(k.Prefix())
	for _, v := range e.Values {
		if v.Value >= 64 || m&(1<<v.Value) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToLower(v.Name[pfx:]))
		m &^= 1 << v.Value
	}
	if m != 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString("0x")
		b.WriteString(strconv.FormatUint(m, 16))
	}
	return b.String()
}

// FormatOptions prints the delegate_* mount options of s, comma separated,
// as /proc/self/mountinfo shows them; masks that print empty are left out.
func (n *Names) FormatOptions(s Set) string {
	var parts []string
	for _, k := range Kinds {
		if v := n.FormatMask(k, s.Mask(k)); v != "" {
			parts = append(parts, k.Option()+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

// Canonical returns s with the bits the kernel ignores cleared, the way the
// kernel stores what it shows.
func (n *Names) Canonical(s Set) Set {
	for _, k := range Kinds {
		s.SetMask(k, s.Mask(k)&n.Enums[k].Any())
	}
	return s
}

// Split returns the short names of the bits set in mask m, and the bits that
// have no name.
func (n *Names) Split(k Kind, m uint64) (names []string, unnamed uint64) {
	pfx := len(k.Prefix())
	for _, v := range n.Enums[k].Values {
		if v.Value < 64 && m&(1<<v.Value) != 0 {
			names = append(names, strings.ToLower(v.Name[pfx:]))
			m &^= 1 << v.Value
		}
	}
	return names, m
}
