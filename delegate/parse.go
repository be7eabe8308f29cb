package delegate

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

var (
	// ErrUnknownName means a word is neither a known name, "any", nor a number.
	ErrUnknownName = errors.New("unknown name")
	// ErrEmpty means an empty value or an empty element between separators.
	ErrEmpty = errors.New("empty value")
	// ErrRange means a number does not fit in 64 bits.
	ErrRange = errors.New("number out of range")
	// ErrUnknownOption means an option is not one of delegate_cmds,
	// delegate_maps, delegate_progs or delegate_attachs.
	ErrUnknownOption = errors.New("unknown option")
)

// ParseError says which option and word could not be parsed, and what the
// caller may have meant.
type ParseError struct {
	Option      string   // e.g. delegate_cmds
	Word        string   // the offending element
	Noun        string   // what the word should have been, e.g. "command"
	Suggestions []string // closest valid names
	Err         error    // ErrUnknownName, ErrEmpty or ErrRange
}

func (e *ParseError) Error() string {
	var b strings.Builder
	switch {
	case errors.Is(e.Err, ErrEmpty):
		fmt.Fprintf(&b, "%s: empty element (remove the extra separator)", e.Option)
		return b.String()
	case errors.Is(e.Err, ErrRange):
		fmt.Fprintf(&b, "%s: %q does not fit in 64 bits", e.Option, e.Word)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: unknown %s %q", e.Option, e.Noun, e.Word)
	if len(e.Suggestions) > 0 {
		fmt.Fprintf(&b, "; did you mean %s?", strings.Join(e.Suggestions, ", "))
	} else {
		b.WriteString("; the running kernel has no such name")
	}
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// ParseMask parses one option value the way the kernel's bpf_parse_param
// does: elements joined by ':', each "any", a name (case insensitive, with
// or without the kind's prefix) or a number (decimal, 0x hex, 0 octal). All
// elements OR together.
func (n *Names) ParseMask(k Kind, value string) (uint64, error) {
	return n.parse(k, value, ":")
}

// ParseList is ParseMask for people: ',' separates elements as well as ':',
// and blanks around elements are ignored.
func (n *Names) ParseList(k Kind, value string) (uint64, error) {
	return n.parse(k, value, ":,")
}

func (n *Names) parse(k Kind, value, seps string) (uint64, error) {
	if !k.valid() {
		return 0, fmt.Errorf("kind %d: %w", int(k), ErrUnknownOption)
	}
	lenient := len(seps) > 1
	if value == "" || (lenient && strings.TrimSpace(value) == "") {
		return 0, &ParseError{Option: k.Option(), Noun: k.noun(), Err: ErrEmpty}
	}
	var mask uint64
	for _, word := range splitAny(value, seps) {
		if lenient {
			word = strings.TrimSpace(word)
		}
		m, err := n.parseWord(k, word)
		if err != nil {
			return 0, err
		}
		mask |= m
	}
	return mask, nil
}

// splitAny splits s at every byte in seps, keeping empty fields (the kernel's
// strsep does, and rejects them).
func splitAny(s, seps string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(seps, s[i]) >= 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// ParseKnown parses list as ParseList does, but skips the words these
// names do not know and returns them as "kind=word": for lists written for
// newer kernels than the running one (bpfgate's built-in profiles).
func (n *Names) ParseKnown(k Kind, list string) (uint64, []string) {
	var m uint64
	var skipped []string
	for _, w := range splitAny(list, ":,") {
		v, err := n.parseWord(k, w)
		if err != nil {
			skipped = append(skipped, k.String()+"="+w)
			continue
		}
		m |= v
	}
	return m, skipped
}

func (n *Names) parseWord(k Kind, word string) (uint64, error) {
	if word == "" {
		return 0, &ParseError{Option: k.Option(), Noun: k.noun(), Err: ErrEmpty}
	}
	if strings.EqualFold(word, "any") {
		return ^uint64(0), nil
	}
	if v, ok := n.Lookup(k, word); ok {
		if v >= 64 {
			return 0, &ParseError{Option: k.Option(), Word: word, Noun: k.noun(), Err: ErrRange}
		}
		return 1 << v, nil
	}
	num, err := parseKernelNumber(word)
	if errors.Is(err, strconv.ErrRange) {
		return 0, &ParseError{Option: k.Option(), Word: word, Noun: k.noun(), Err: ErrRange}
	}
	if err != nil {
		return 0, &ParseError{Option: k.Option(), Word: word, Noun: k.noun(),
			Suggestions: n.suggest(k, word), Err: ErrUnknownName}
	}
	return num, nil
}

// parseKernelNumber follows kstrtou64(s, 0): an optional '+', then 0x hex,
// 0 octal or decimal, and at most one trailing newline.
func parseKernelNumber(s string) (uint64, error) {
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimPrefix(s, "+")
	base := 10
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0, err.(*strconv.NumError).Err
	}
	return v, nil
}

// suggest returns up to three names closest to word.
func (n *Names) suggest(k Kind, word string) []string {
	w := strings.ToLower(word)
	if hasPrefixFold(w, k.Prefix()) {
		w = w[len(k.Prefix()):]
	}
	type cand struct {
		name string
		d    int
	}
	var cands []cand
	for _, name := range append(n.allNames(k), "any") {
		d := editDistance(w, name)
		if strings.Contains(name, w) && len(w) >= 3 {
			d = min(d, 1)
		}
		if d <= max(2, len(w)/3) {
			cands = append(cands, cand{name, d})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.d - b.d })
	var out []string
	for _, c := range cands {
		if !slices.Contains(out, c.name) {
			out = append(out, c.name)
		}
		if len(out) == 3 {
			break
		}
	}
	return out
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ParseOptions reads the delegate_* options out of a comma-separated mount
// option string such as the super options in /proc/self/mountinfo. Other
// options are ignored; repeated options OR together, as in the kernel.
func (n *Names) ParseOptions(opts string) (Set, error) {
	var s Set
	for _, opt := range strings.Split(opts, ",") {
		key, value, _ := strings.Cut(opt, "=")
		k, ok := KindByOption(key)
		if !ok {
			continue
		}
		m, err := n.ParseMask(k, value)
		if err != nil {
			return Set{}, err
		}
		s.SetMask(k, s.Mask(k)|m)
	}
	return s, nil
}

// SetFlags builds a Set from four lists in the command line syntax
// (ParseList); empty lists delegate nothing.
func (n *Names) SetFlags(cmds, maps, progs, attachs string) (Set, error) {
	var s Set
	for k, v := range [...]string{cmds, maps, progs, attachs} {
		if v == "" {
			continue
		}
		m, err := n.ParseList(Kind(k), v)
		if err != nil {
			return Set{}, err
		}
		s.SetMask(Kind(k), m)
	}
	return s, nil
}
