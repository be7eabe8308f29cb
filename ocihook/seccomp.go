package ocihook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bpfgate/bpfgate/internal/boundedio"
)

// DefaultSeccompBase is the seccomp profile podman and CRI-O apply by
// default (containers-common).
const DefaultSeccompBase = "/usr/share/containers/seccomp.json"

// ErrSeccompFormat means a seccomp profile is not in the containers/common
// (or moby) JSON format.
var ErrSeccompFormat = errors.New("not a containers seccomp profile")

// ReadSeccompBase reads a base profile for SeccompAllowBPF: a regular file
// of at most MaxSeccompSize bytes.
func ReadSeccompBase(path string) ([]byte, error) {
	return boundedio.ReadFile(path, MaxSeccompSize)
}

// object is a JSON object whose values are kept as they were written, so
// that the fields the rewrite does not look at (and large numbers in args)
// come out unchanged.
type object = map[string]json.RawMessage

// allowBPFRule is the rule SeccompAllowBPF adds.
var allowBPFRule = mustMarshal(map[string]any{
	"names":    []string{"bpf"},
	"action":   "SCMP_ACT_ALLOW",
	"args":     []any{},
	"comment":  "bpfgate: BPF tokens need bpf(2) with CAP_BPF in the container's user namespace",
	"includes": map[string]any{"caps": []string{"CAP_BPF"}},
	"excludes": map[string]any{"caps": []string{"CAP_SYS_ADMIN"}},
})

// SeccompAllowBPF rewrites a containers seccomp profile so that bpf(2) is
// allowed to containers with CAP_BPF, not only to those with
// CAP_SYS_ADMIN. The default profile of containers-common before 0.57
// (Debian 12's podman 4.3) fails every bpf(2) call of a container without
// CAP_SYS_ADMIN with EPERM, before the kernel could look at a token.
// Everything else in the profile is kept as it is, and a profile rewritten
// once comes out of a second rewrite unchanged.
//
// A field of an unexpected JSON type is an error wrapping ErrSeccompFormat
// that names the field.
func SeccompAllowBPF(base []byte) ([]byte, error) {
	var prof object
	if err := json.Unmarshal(base, &prof); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSeccompFormat, err)
	}
	if err := checkSpelling(prof, "", "syscalls"); err != nil {
		return nil, err
	}
	raw, ok := prof["syscalls"]
	if !ok {
		return nil, fmt.Errorf("%w: no syscalls list", ErrSeccompFormat)
	}
	var rules []json.RawMessage
	if err := decode(raw, &rules, "syscalls", "a list of rules"); err != nil {
		return nil, err
	}
	if rules == nil && jsonKind(raw) == "null" {
		return nil, fmt.Errorf("%w: syscalls: want a list of rules, got null", ErrSeccompFormat)
	}
	var out []json.RawMessage
	present := false
	for i, r := range rules {
		field := fmt.Sprintf("syscalls[%d]", i)
		var rule object
		if err := decode(r, &rule, field, "an object"); err != nil {
			return nil, err
		}
		if rule == nil {
			return nil, fmt.Errorf("%w: %s: want an object, got null", ErrSeccompFormat, field)
		}
		var names []string
		var action string
		var args []json.RawMessage
		if err := decodeFields(rule, field, []fieldSpec{
			{"names", &names, "a list of strings"},
			{"action", &action, "a string"},
			{"args", &args, "a list"},
		}); err != nil {
			return nil, err
		}
		if isRule(r, allowBPFRule) {
			present = true
		}
		if !slices.Contains(names, "bpf") || action == "SCMP_ACT_ALLOW" || len(args) > 0 {
			out = append(out, r)
			continue
		}
		// A rule that denies bpf: keep it for the other syscalls, and deny
		// bpf only to containers with neither CAP_BPF nor CAP_SYS_ADMIN.
		var excl object
		if err := decodeFields(rule, field, []fieldSpec{{"excludes", &excl, "an object"}}); err != nil {
			return nil, err
		}
		var caps []string
		if err := decodeFields(excl, field+".excludes", []fieldSpec{{"caps", &caps, "a list of strings"}}); err != nil {
			return nil, err
		}
		rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "bpf" })
		if len(rest) > 0 {
			other := maps.Clone(rule)
			other["names"] = mustMarshal(rest)
			out = append(out, mustMarshal(other))
		}
		for _, c := range []string{"CAP_SYS_ADMIN", "CAP_BPF"} {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
		excl = maps.Clone(excl)
		if excl == nil {
			excl = object{}
		}
		excl["caps"] = mustMarshal(caps)
		deny := maps.Clone(rule)
		deny["names"] = mustMarshal([]string{"bpf"})
		deny["comment"] = mustMarshal("bpfgate: bpf(2) needs CAP_BPF or CAP_SYS_ADMIN")
		deny["excludes"] = mustMarshal(excl)
		out = append(out, mustMarshal(deny))
	}
	if !present {
		out = append(out, allowBPFRule)
	}
	prof["syscalls"] = mustMarshal(out)
	return json.MarshalIndent(prof, "", "\t")
}

type fieldSpec struct {
	name string
	dst  any
	want string
}

// decodeFields decodes the named fields of obj that are present and not
// null; the others keep their zero values.
func decodeFields(obj object, prefix string, fields []fieldSpec) error {
	for _, f := range fields {
		if err := checkSpelling(obj, prefix+".", f.name); err != nil {
			return err
		}
		raw, ok := obj[f.name]
		if !ok {
			continue
		}
		if err := decode(raw, f.dst, prefix+"."+f.name, f.want); err != nil {
			return err
		}
	}
	return nil
}

// checkSpelling refuses a key that differs from name only in case:
// runtimes decode profiles with encoding/json, which matches keys without
// regard to case, so "Names" would be a list of names to them and none to
// the rewrite.
func checkSpelling(obj object, prefix, name string) error {
	for k := range obj {
		if k != name && strings.EqualFold(k, name) {
			return fmt.Errorf("%w: %s%s: write it as %q", ErrSeccompFormat, prefix, k, name)
		}
	}
	return nil
}

// decode unmarshals raw into dst (null leaves it alone) or says which field
// had which type instead of the one wanted.
func decode(raw json.RawMessage, dst any, field, want string) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: %s: want %s, got %s", ErrSeccompFormat, field, want, jsonKind(raw))
	}
	return nil
}

// jsonKind names the type of a JSON value for an error message.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		// A list of the wrong items: say which.
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for _, it := range items {
				if k := jsonKind(it); k != "a string" {
					return "a list with " + k
				}
			}
		}
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// isRule reports whether raw is the same JSON value as want (compact form).
func isRule(raw, want json.RawMessage) bool {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return false
	}
	return bytes.Equal(b.Bytes(), want)
}

// mustMarshal marshals values that always marshal: strings, lists of them,
// and objects of raw JSON.
func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ocihook: marshal %T: %v", v, err))
	}
	return b
}
