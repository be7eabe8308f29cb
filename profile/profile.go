package profile

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/bpfgate/bpfgate/delegate"

	"gopkg.in/yaml.v3"

	"github.com/bpfgate/bpfgate/internal/boundedio"
)

// ErrUnknown means no profile has the requested name.
var ErrUnknown = errors.New("unknown profile")

// BPFFSPath returns where the profile's bpffs goes inside a workload.
func (p Profile) BPFFSPath() string {
	if p.Path == "" {
		return delegate.DefaultPath
	}
	return p.Path
}

// Profile is a named delegation, written with names so that it reads the same
// on every kernel.
type Profile struct {
	Name        string `json:"name" yaml:"-"`
	Description string `json:"description,omitempty" yaml:"description"`
	Cmds        string `json:"cmds,omitempty" yaml:"cmds"`
	Maps        string `json:"maps,omitempty" yaml:"maps"`
	Progs       string `json:"progs,omitempty" yaml:"progs"`
	Attachs     string `json:"attachs,omitempty" yaml:"attachs"`
	// Caps are capabilities a workload keeps inside its user namespace on
	// top of those the delegation itself calls for (see delegate.CapsFor).
	Caps []string `json:"caps,omitempty" yaml:"caps"`
	// Path is where a container gets the bpffs (delegate.DefaultPath if empty).
	Path string `json:"path,omitempty" yaml:"path"`
	// UID and GID own the bpffs root, as ids inside the workload's user
	// namespace (its root if nil); Mode is its permission bits.
	UID  *uint32 `json:"uid,omitempty" yaml:"uid"`
	GID  *uint32 `json:"gid,omitempty" yaml:"gid"`
	Mode *uint32 `json:"mode,omitempty" yaml:"-"`
	// Audit is a directory where the OCI hook records the bpf() calls of
	// each container given this profile, one CONTAINER-ID.jsonl file each
	// (none if empty). See docs/audit.md.
	Audit string `json:"audit,omitempty" yaml:"audit"`
	// K8sNamespaces are the Kubernetes namespaces whose pods may have this
	// profile (any if empty): the NRI plugin and the DRA driver refuse the
	// others, and the device plugin, which cannot tell a pod's namespace,
	// does not offer a profile that has them.
	K8sNamespaces []string `json:"k8s_namespaces,omitempty" yaml:"k8s_namespaces"`
	// Builtin profiles skip names the running kernel does not know yet.
	Builtin bool   `json:"builtin" yaml:"-"`
	Source  string `json:"source,omitempty" yaml:"-"`
}

const coreCmds = "map_create:prog_load:btf_load"

var builtinProfiles = []Profile{
	{
		Name:        "demo",
		Description: "the smallest useful delegation: hash and array maps and socket filters",
		Cmds:        coreCmds,
		Maps:        "hash:array",
		Progs:       "socket_filter",
		Attachs:     "cgroup_inet_ingress",
	},
	{
		Name:        "net",
		Description: "networking: XDP, TC/tcx, cgroup socket hooks, sockmap, flow dissector and their maps",
		Cmds:        coreCmds + ":link_create:prog_attach:prog_detach",
		Maps: "hash:array:percpu_hash:percpu_array:lru_hash:lru_percpu_hash:lpm_trie:prog_array:" +
			"perf_event_array:ringbuf:array_of_maps:hash_of_maps:queue:stack:bloom_filter:" +
			"sockmap:sockhash:devmap:devmap_hash:cpumap:xskmap:sk_storage:reuseport_sockarray",
		Progs: "socket_filter:sched_cls:sched_act:xdp:cgroup_skb:cgroup_sock:cgroup_sock_addr:sock_ops:" +
			"sk_skb:sk_msg:flow_dissector:sk_lookup:sk_reuseport:cgroup_sockopt:lwt_in:lwt_out:lwt_xmit",
		// Without CAP_PERFMON the verifier treats the loader as
		// unprivileged: no pointer comparisons, no bpf_printk.
		Caps: []string{"CAP_PERFMON"},
		Attachs: "cgroup_inet_ingress:cgroup_inet_egress:cgroup_inet_sock_create:cgroup_inet_sock_release:" +
			"cgroup_sock_ops:sk_skb_stream_parser:sk_skb_stream_verdict:sk_skb_verdict:sk_msg_verdict:" +
			"cgroup_inet4_bind:cgroup_inet6_bind:cgroup_inet4_connect:cgroup_inet6_connect:" +
			"cgroup_inet4_post_bind:cgroup_inet6_post_bind:cgroup_udp4_sendmsg:cgroup_udp6_sendmsg:" +
			"cgroup_udp4_recvmsg:cgroup_udp6_recvmsg:cgroup_getsockopt:cgroup_setsockopt:" +
			"flow_dissector:sk_lookup:xdp:xdp_devmap:xdp_cpumap:tcx_ingress:tcx_egress:" +
			"netkit_primary:netkit_peer:sk_reuseport_select:sk_reuseport_select_or_migrate",
	},
	{
		Name: "trace",
		Description: "tracing as far as a token allows it: raw tracepoints, tp_btf, iterators, uprobe_multi, fentry/fexit where the kernel allows them, ringbuf " +
			"(never perf_event_open-based kprobes, tracepoints, uprobes or perf buffers: see docs/profiles.md)",
		Cmds: coreCmds + ":link_create:raw_tracepoint_open",
		// socket_filter with cgroup_inet_ingress: libbpf's feature probes
		// load one with the token, and skip .rodata and .bss when that
		// fails. tracepoint: its probe for bpf_probe_read_kernel loads
		// one (attaching one needs perf_event_open, which no token
		// reaches). kprobe: uprobe_multi and kprobe_multi programs are of
		// that type. cgroup_array: bcc's tools declare one. No perf_event
		// programs: they attach only to a perf event.
		Maps: "hash:array:percpu_hash:percpu_array:lru_hash:lru_percpu_hash:perf_event_array:" +
			"stack_trace:ringbuf:task_storage:queue:stack:bloom_filter:array_of_maps:hash_of_maps:cgroup_array",
		Progs: "socket_filter:kprobe:tracepoint:raw_tracepoint:raw_tracepoint_writable:tracing",
		Attachs: "cgroup_inet_ingress:trace_raw_tp:trace_fentry:trace_fexit:trace_iter:" +
			"trace_kprobe_multi:trace_uprobe_multi:trace_kprobe_session:trace_uprobe_session",
	},
}

func init() {
	for i := range builtinProfiles {
		builtinProfiles[i].Builtin = true
		builtinProfiles[i].Source = "builtin"
	}
}

// AllowsK8sNamespace says whether pods of the Kubernetes namespace ns may
// have the profile: any may when K8sNamespaces is empty.
func (p Profile) AllowsK8sNamespace(ns string) bool {
	return len(p.K8sNamespaces) == 0 || slices.Contains(p.K8sNamespaces, ns)
}

// isDNSLabel says whether s is an RFC 1123 label, as Kubernetes namespace
// names are.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// Builtins returns the profiles compiled into bpfgate.
func Builtins() []Profile { return slices.Clone(builtinProfiles) }

// Resolve turns the profile into a delegate.Set with the names n knows. A built-in
// profile skips names the kernel does not know (they are returned); a
// profile from a file must be exact.
func (p Profile) Resolve(n *delegate.Names) (delegate.Set, []string, error) {
	var s delegate.Set
	var skipped []string
	for k, list := range [...]string{p.Cmds, p.Maps, p.Progs, p.Attachs} {
		if list == "" {
			continue
		}
		kind := delegate.Kind(k)
		if !p.Builtin {
			m, err := n.ParseList(kind, list)
			if err != nil {
				return delegate.Set{}, nil, fmt.Errorf("profile %s: %w", p.Name, err)
			}
			s.SetMask(kind, m)
			continue
		}
		m, unknown := n.ParseKnown(kind, list)
		skipped = append(skipped, unknown...)
		s.SetMask(kind, m)
	}
	return s, skipped, nil
}

// Find returns the profile called name among profiles (searched
// last to first, so later sources override earlier ones).
func Find(profiles []Profile, name string) (Profile, error) {
	for i := len(profiles) - 1; i >= 0; i-- {
		if profiles[i].Name == name {
			return profiles[i], nil
		}
	}
	var names []string
	for _, p := range profiles {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return Profile{}, fmt.Errorf("%w %q (known: %s)", ErrUnknown, name, strings.Join(names, ", "))
}

// ConfigError points at the file, line and key of a bad entry in a file of
// bpfgate's: a config file here, a preload manifest (preload.ManifestError).
type ConfigError struct {
	Path string
	Line int
	Key  string
	Err  error
	// Kind, if set, is a sentinel the error also matches with errors.Is
	// (preload.ErrManifest).
	Kind error
}

func configError(path string, line int, key string, err error) *ConfigError {
	return &ConfigError{Path: path, Line: line, Key: key, Err: err}
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.Path, e.Line, e.Key, e.Err)
}

func (e *ConfigError) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Err}
}

// list accepts a YAML string ("a:b") or a sequence of strings.
type list string

func (l *list) UnmarshalYAML(node *yaml.Node) error {
	switch node.Kind {
	case yaml.ScalarNode:
		*l = list(node.Value)
	case yaml.SequenceNode:
		var items []string
		if err := node.Decode(&items); err != nil {
			return err
		}
		*l = list(strings.Join(items, ":"))
	default:
		return fmt.Errorf("want a list of names or a string like a:b")
	}
	return nil
}

type profileYAML struct {
	Description string   `yaml:"description"`
	Cmds        list     `yaml:"cmds"`
	Maps        list     `yaml:"maps"`
	Progs       list     `yaml:"progs"`
	Attachs     list     `yaml:"attachs"`
	Caps        []string `yaml:"caps"`
	Path        string   `yaml:"path"`
	UID         *uint32  `yaml:"uid"`
	GID         *uint32  `yaml:"gid"`
	Mode        string   `yaml:"mode"`
	Audit       string   `yaml:"audit"`
	// K8sNamespaces is a pointer so that an empty list can be told from
	// none.
	K8sNamespaces *[]string `yaml:"k8s_namespaces"`
}

// Load reads profiles from a YAML file of the form
//
//	profiles:
//	  NAME:
//	    description: ...
//	    cmds: [map_create, prog_load]   # or map_create:prog_load
//	    maps: hash:array
//	    progs: socket_filter
//	    attachs: cgroup_inet_ingress
//	    caps: [CAP_NET_ADMIN]
//	    path: /sys/fs/bpf   # where containers get the bpffs
//	    uid: 0              # owner of the bpffs root, inside the workload
//	    gid: 0
//	    mode: "0700"
//	    audit: /var/log/bpfgate/audit  # the OCI hook records containers' bpf() calls here
//	    k8s_namespaces: [monitoring]   # only pods of these Kubernetes namespaces
//
// and checks every name against n. Errors carry the file, line and key.
func Load(path string, n *delegate.Names) ([]Profile, error) {
	data, err := boundedio.ReadFile(path, MaxConfigSize)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, configError(path, root.Line, "", errors.New("want a mapping with a 'profiles' key"))
	}
	if err := checkProfileNames(path, root); err != nil {
		return nil, err
	}
	var out []Profile
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		if key.Value != "profiles" {
			continue // other sections belong to other parts of bpfgate
		}
		if val.Kind != yaml.MappingNode {
			return nil, configError(path, val.Line, "profiles", errors.New("want a mapping of profile names"))
		}
		for j := 0; j+1 < len(val.Content); j += 2 {
			name, body := val.Content[j], val.Content[j+1]
			p, err := decodeProfile(path, name, body, n)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

var knownProfileKeys = []string{"description", "cmds", "maps", "progs", "attachs", "caps", "path", "uid", "gid", "mode", "audit", "k8s_namespaces"}

func decodeProfile(path string, name, body *yaml.Node, n *delegate.Names) (Profile, error) {
	key := "profiles." + name.Value
	if body.Kind != yaml.MappingNode {
		return Profile{}, configError(path, body.Line, key, errors.New("want a mapping"))
	}
	for i := 0; i+1 < len(body.Content); i += 2 {
		k := body.Content[i]
		if !slices.Contains(knownProfileKeys, k.Value) {
			return Profile{}, configError(path, k.Line, key+"."+k.Value,
				fmt.Errorf("unknown key (want one of %s)", strings.Join(knownProfileKeys, ", ")))
		}
	}
	var py profileYAML
	if err := body.Decode(&py); err != nil {
		return Profile{}, configError(path, body.Line, key, err)
	}
	p := Profile{Name: name.Value, Description: py.Description, Cmds: string(py.Cmds), Maps: string(py.Maps),
		Progs: string(py.Progs), Attachs: string(py.Attachs), Caps: py.Caps, Source: path,
		Path: py.Path, UID: py.UID, GID: py.GID, Audit: py.Audit}
	line := func(k string) int {
		for i := 0; i+1 < len(body.Content); i += 2 {
			if body.Content[i].Value == k {
				return body.Content[i+1].Line
			}
		}
		return body.Line
	}
	if py.Path != "" && (!filepath.IsAbs(py.Path) || filepath.Clean(py.Path) != py.Path || py.Path == "/") {
		return Profile{}, configError(path, line("path"), key+".path",
			fmt.Errorf("%q: want a clean absolute path below /, e.g. %s", py.Path, delegate.DefaultPath))
	}
	if py.Audit != "" && (!filepath.IsAbs(py.Audit) || filepath.Clean(py.Audit) != py.Audit || py.Audit == "/") {
		return Profile{}, configError(path, line("audit"), key+".audit",
			fmt.Errorf("%q: want a clean absolute directory path, e.g. /var/log/bpfgate/audit", py.Audit))
	}
	hasKey := func(k string) bool {
		for i := 0; i+1 < len(body.Content); i += 2 {
			if body.Content[i].Value == k {
				return true
			}
		}
		return false
	}
	if py.K8sNamespaces == nil && hasKey("k8s_namespaces") {
		// The key with no value (~, or its list commented out): leaving
		// it out would allow every namespace, which it hardly meant.
		return Profile{}, configError(path, line("k8s_namespaces"), key+".k8s_namespaces",
			errors.New("no namespace given: name at least one, or leave the key out to allow every namespace"))
	}
	if py.K8sNamespaces != nil {
		if len(*py.K8sNamespaces) == 0 {
			return Profile{}, configError(path, line("k8s_namespaces"), key+".k8s_namespaces",
				errors.New("an empty list would allow no namespace: name at least one, or leave the key out to allow every namespace"))
		}
		for _, ns := range *py.K8sNamespaces {
			if !isDNSLabel(ns) {
				return Profile{}, configError(path, line("k8s_namespaces"), key+".k8s_namespaces",
					fmt.Errorf("%q: not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)", ns))
			}
		}
		p.K8sNamespaces = *py.K8sNamespaces
	}
	if py.Mode != "" {
		m, err := strconv.ParseUint(py.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			return Profile{}, configError(path, line("mode"), key+".mode",
				fmt.Errorf("%q: want octal permission bits as a string, e.g. \"0700\"", py.Mode))
		}
		mode := uint32(m)
		p.Mode = &mode
	}
	for i := 0; i+1 < len(body.Content); i += 2 {
		k, v := body.Content[i], body.Content[i+1]
		kind, ok := delegate.KindByName(k.Value)
		if !ok {
			continue
		}
		if _, err := n.ParseList(kind, string([...]list{py.Cmds, py.Maps, py.Progs, py.Attachs}[kind])); err != nil {
			return Profile{}, configError(path, v.Line, key+"."+k.Value, err)
		}
	}
	return p, nil
}

// Grant is what a profile gives a workload on the running kernel: the
// delegation, the capabilities it keeps inside its user namespace, and
// where and how its bpffs is mounted.
type Grant struct {
	Profile    string
	Delegation delegate.Set
	// Skipped are the names of a built-in profile this kernel does not know.
	Skipped []string
	// Caps: CAP_BPF, what the delegated types call for (delegate.CapsFor)
	// and the profile's own.
	Caps []delegate.Cap
	// Path is where the bpffs goes inside the workload.
	Path string
	// UID, GID and Mode own the bpffs root (nil: the kernel's defaults).
	UID, GID, Mode *uint32
}

// Grant resolves the profile with the names n knows.
func (p Profile) Grant(n *delegate.Names) (Grant, error) {
	set, skipped, err := p.Resolve(n)
	if err != nil {
		return Grant{}, err
	}
	extra, err := delegate.ParseCaps(p.Caps)
	if err != nil {
		return Grant{}, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	caps := delegate.CapsFor(n, set)
	for _, c := range extra {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return Grant{Profile: p.Name, Delegation: set, Skipped: skipped, Caps: caps,
		Path: p.BPFFSPath(), UID: p.UID, GID: p.GID, Mode: p.Mode}, nil
}
