package ocihook

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// DefaultSeccompBase is the seccomp profile podman and CRI-O apply by
// default (containers-common).
const DefaultSeccompBase = "/usr/share/containers/seccomp.json"

// ErrSeccompFormat means a seccomp profile is not in the containers/common
// (or moby) JSON format.
var ErrSeccompFormat = errors.New("not a containers seccomp profile")

// SeccompAllowBPF rewrites a containers seccomp profile so that bpf(2) is
// allowed to containers with CAP_BPF, not only to those with
// CAP_SYS_ADMIN. The default profile of containers-common before 0.57
// (Debian 12's podman 4.3) fails every bpf(2) call of a container without
// CAP_SYS_ADMIN with EPERM, before the kernel could look at a token.
// Everything else in the profile is kept as it is.
func SeccompAllowBPF(base []byte) ([]byte, error) {
	var prof map[string]any
	if err := json.Unmarshal(base, &prof); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSeccompFormat, err)
	}
	raw, ok := prof["syscalls"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: no syscalls list", ErrSeccompFormat)
	}
	var out []any
	for _, r := range raw {
		rule, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: a syscalls entry is not an object", ErrSeccompFormat)
		}
		names := stringList(rule["names"])
		action, _ := rule["action"].(string)
		if !slices.Contains(names, "bpf") || action == "SCMP_ACT_ALLOW" || rule["args"] != nil && len(rule["args"].([]any)) > 0 {
			out = append(out, rule)
			continue
		}
		// A rule that denies bpf: keep it for the other syscalls, and deny
		// bpf only to containers with neither CAP_BPF nor CAP_SYS_ADMIN.
		rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "bpf" })
		if len(rest) > 0 {
			other := clone(rule)
			other["names"] = rest
			out = append(out, other)
		}
		deny := clone(rule)
		deny["names"] = []string{"bpf"}
		deny["comment"] = "bpfgate: bpf(2) needs CAP_BPF or CAP_SYS_ADMIN"
		excl, _ := deny["excludes"].(map[string]any)
		excl = clone(excl)
		caps := stringList(excl["caps"])
		for _, c := range []string{"CAP_SYS_ADMIN", "CAP_BPF"} {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
		excl["caps"] = caps
		deny["excludes"] = excl
		out = append(out, deny)
	}
	out = append(out, map[string]any{
		"names":    []string{"bpf"},
		"action":   "SCMP_ACT_ALLOW",
		"args":     []any{},
		"comment":  "bpfgate: BPF tokens need bpf(2) with CAP_BPF in the container's user namespace",
		"includes": map[string]any{"caps": []string{"CAP_BPF"}},
		"excludes": map[string]any{"caps": []string{"CAP_SYS_ADMIN"}},
	})
	prof["syscalls"] = out
	return json.MarshalIndent(prof, "", "\t")
}

func stringList(v any) []string {
	var out []string
	switch l := v.(type) {
	case []any:
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	case []string:
		out = l
	}
	return out
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
