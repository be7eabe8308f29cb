package profile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"
	"golang.org/x/sys/unix"
)

func TestBuiltinProfilesResolveCleanly(t *testing.T) {
	n := delegate.BuiltinNames()
	for _, p := range Builtins() {
		set, skipped, err := p.Resolve(n)
		if err != nil || len(skipped) > 0 {
			t.Errorf("%s: %v, skipped %v", p.Name, err, skipped)
		}
		if set.IsZero() {
			t.Errorf("%s: delegates nothing", p.Name)
		}
		if ws := n.Lint(set); len(ws) > 0 {
			t.Errorf("%s: lint: %v", p.Name, ws)
		}
	}
	if _, err := Find(Builtins(), "nope"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "demo") {
		t.Errorf("unknown profile: %v", err)
	}
}

func TestLoadProfiles(t *testing.T) {
	n := delegate.BuiltinNames()
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write(`profiles:
  counter:
    description: counts packets
    cmds: [map_create, prog_load, btf_load]
    maps: hash:array
    progs: [xdp]
    attachs: xdp
    caps: [CAP_NET_ADMIN]
    path: /run/bpf
    uid: 1000
    mode: "0700"
    audit: /var/log/bpfgate/audit
    k8s_namespaces: [monitoring, net-tools]
`)
	ps, err := Load(p, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "counter" || ps[0].Cmds != "map_create:prog_load:btf_load" || ps[0].Caps[0] != "CAP_NET_ADMIN" {
		t.Fatalf("got %+v", ps)
	}
	if ps[0].BPFFSPath() != "/run/bpf" || *ps[0].UID != 1000 || ps[0].GID != nil || *ps[0].Mode != 0o700 || ps[0].Audit != "/var/log/bpfgate/audit" {
		t.Fatalf("container fields: %+v", ps[0])
	}
	if !slices.Equal(ps[0].K8sNamespaces, []string{"monitoring", "net-tools"}) || !ps[0].AllowsK8sNamespace("net-tools") ||
		ps[0].AllowsK8sNamespace("default") || !(Profile{}).AllowsK8sNamespace("default") {
		t.Fatalf("k8s_namespaces: %+v", ps[0].K8sNamespaces)
	}
	if (Profile{}).BPFFSPath() != delegate.DefaultPath {
		t.Fatal("default path")
	}
	set, _, err := ps[0].Resolve(n)
	if err != nil || n.FormatMask(delegate.Progs, set.Progs) != "xdp" {
		t.Fatalf("resolve: %v %+v", err, set)
	}

	for _, tc := range []struct{ body, want string }{
		{"profiles:\n  x:\n    maps: hsah\n", `config.yaml:3: profiles.x.maps: delegate_maps: unknown map type "hsah"; did you mean hash?`},
		{"profiles:\n  x:\n    colour: red\n", "config.yaml:3: profiles.x.colour: unknown key"},
		{"profiles:\n  x: 3\n", "config.yaml:2: profiles.x: want a mapping"},
		{"profiles: [a]\n", "config.yaml:1: profiles: want a mapping of profile names"},
		{"profiles:\n  x:\n    progs: {a: b}\n", "config.yaml:3: profiles.x"},
		{"profiles:\n  x:\n    maps: hash\n    path: sys/fs/bpf\n", `config.yaml:4: profiles.x.path: "sys/fs/bpf": want a clean absolute path`},
		{"profiles:\n  x:\n    maps: hash\n    audit: var/log\n", `config.yaml:4: profiles.x.audit: "var/log": want a clean absolute directory path`},
		{"profiles:\n  x:\n    path: /sys/../etc\n", `config.yaml:3: profiles.x.path: "/sys/../etc"`},
		{"profiles:\n  x:\n    mode: \"0999\"\n", `config.yaml:3: profiles.x.mode: "0999": want octal`},
		{"profiles:\n  x:\n    uid: -1\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    k8s_namespaces: []\n", "config.yaml:3: profiles.x.k8s_namespaces: an empty list would allow no namespace"},
		{"profiles:\n  x:\n    k8s_namespaces: [Default]\n", `config.yaml:3: profiles.x.k8s_namespaces: "Default": not a Kubernetes namespace name`},
		{"profiles:\n  x:\n    k8s_namespaces: [a-]\n", `"a-": not a Kubernetes namespace name`},
		{"profiles:\n  x:\n    k8s_namespaces: [" + strings.Repeat("a", 64) + "]\n", "not a Kubernetes namespace name"},
		{"profiles:\n  x:\n    k8s_namespaces: [\"\"]\n", `"": not a Kubernetes namespace name`},
		{"profiles:\n  x:\n    k8s_namespaces: monitoring\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		// A key with no value (the list commented out, or ~) must not
		// mean every namespace, as leaving the key out does.
		{"profiles:\n  x:\n    k8s_namespaces:\n    # - monitoring\n", "config.yaml:3: profiles.x.k8s_namespaces: no namespace given"},
		{"profiles:\n  x:\n    k8s_namespaces: ~\n", "config.yaml:3: profiles.x.k8s_namespaces: no namespace given"},
	} {
		_, err := Load(write(tc.body), n)
		var ce *ConfigError
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		} else if !errors.As(err, &ce) {
			t.Errorf("%q: %T is not a ConfigError", tc.body, err)
		}
	}
}

// TestBuiltinProfilesFitRealTools pins down what real tools were seen to
// need: libbpf's feature probes load a socket filter (expected attach type
// cgroup_inet_ingress) with the token, bcc's tools declare a cgroup_array,
// and without CAP_PERFMON the verifier treats a net loader as unprivileged.
func TestBuiltinProfilesFitRealTools(t *testing.T) {
	names := delegate.BuiltinNames()
	grant := func(name string) Grant {
		t.Helper()
		p, err := Find(Builtins(), name)
		if err != nil {
			t.Fatal(err)
		}
		g, err := p.Grant(names)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	has := func(g Grant, k delegate.Kind, name string) bool {
		v, ok := names.Lookup(k, name)
		return ok && g.Delegation.Has(k, v)
	}
	trace := grant("trace")
	for _, c := range []struct {
		k    delegate.Kind
		name string
	}{{delegate.Progs, "socket_filter"}, {delegate.Attachs, "cgroup_inet_ingress"}, {delegate.Maps, "cgroup_array"}, {delegate.Maps, "ringbuf"},
		{delegate.Progs, "tracepoint"}, {delegate.Progs, "raw_tracepoint"}, {delegate.Progs, "tracing"},
		{delegate.Attachs, "trace_raw_tp"}} {
		if !has(trace, c.k, c.name) {
			t.Errorf("trace lacks %s %s", c.k, c.name)
		}
	}
	// perf_event programs attach only to a perf event, which no token
	// reaches (perf_event_open checks the initial namespace).
	if has(trace, delegate.Progs, "perf_event") || has(trace, delegate.Attachs, "perf_event") {
		t.Error("trace delegates perf_event programs, which can never attach under a token")
	}
	if !slices.Contains(grant("net").Caps, delegate.Cap(unix.CAP_PERFMON)) {
		t.Errorf("net does not keep CAP_PERFMON: %v", grant("net").Caps)
	}
}
