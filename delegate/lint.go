package delegate

import (
	"fmt"
	"strings"
)

// Warning is a delegation that the kernel accepts but that probably does
// not do what was meant.
type Warning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (w Warning) String() string { return w.Message }

// attachTypesOf lists, for a program type, the attach types its loads carry
// as expected_attach_type. The kernel checks a token for both the program
// type and that attach type; expected_attach_type 0 reads as
// cgroup_inet_ingress. The first entry is what cilium/ebpf and libbpf use
// for the program type's plain section name.
var attachTypesOf = map[string][]string{
	"socket_filter":           {"cgroup_inet_ingress"},
	"kprobe":                  {"cgroup_inet_ingress", "trace_kprobe_multi", "trace_uprobe_multi", "trace_kprobe_session", "trace_uprobe_session"},
	"sched_cls":               {"cgroup_inet_ingress", "tcx_ingress", "tcx_egress", "netkit_primary", "netkit_peer"},
	"sched_act":               {"cgroup_inet_ingress"},
	"tracepoint":              {"cgroup_inet_ingress"},
	"xdp":                     {"xdp", "cgroup_inet_ingress", "xdp_devmap", "xdp_cpumap"},
	"perf_event":              {"cgroup_inet_ingress", "perf_event"},
	"cgroup_skb":              {"cgroup_inet_ingress", "cgroup_inet_egress"},
	"cgroup_sock":             {"cgroup_inet_sock_create", "cgroup_inet_sock_release", "cgroup_inet4_post_bind", "cgroup_inet6_post_bind"},
	"lwt_in":                  {"cgroup_inet_ingress"},
	"lwt_out":                 {"cgroup_inet_ingress"},
	"lwt_xmit":                {"cgroup_inet_ingress"},
	"sock_ops":                {"cgroup_sock_ops", "cgroup_inet_ingress"},
	"sk_skb":                  {"cgroup_inet_ingress", "sk_skb_stream_parser", "sk_skb_stream_verdict", "sk_skb_verdict"},
	"cgroup_device":           {"cgroup_device", "cgroup_inet_ingress"},
	"sk_msg":                  {"sk_msg_verdict", "cgroup_inet_ingress"},
	"raw_tracepoint":          {"cgroup_inet_ingress"},
	"cgroup_sock_addr":        {"cgroup_inet4_connect", "cgroup_inet6_connect", "cgroup_inet4_bind", "cgroup_inet6_bind", "cgroup_udp4_sendmsg", "cgroup_udp6_sendmsg", "cgroup_udp4_recvmsg", "cgroup_udp6_recvmsg", "cgroup_inet4_getpeername", "cgroup_inet6_getpeername", "cgroup_inet4_getsockname", "cgroup_inet6_getsockname", "cgroup_unix_connect", "cgroup_unix_sendmsg", "cgroup_unix_recvmsg", "cgroup_unix_getpeername", "cgroup_unix_getsockname"},
	"lwt_seg6local":           {"cgroup_inet_ingress"},
	"lirc_mode2":              {"lirc_mode2", "cgroup_inet_ingress"},
	"sk_reuseport":            {"sk_reuseport_select", "sk_reuseport_select_or_migrate", "cgroup_inet_ingress"},
	"flow_dissector":          {"flow_dissector", "cgroup_inet_ingress"},
	"cgroup_sysctl":           {"cgroup_sysctl", "cgroup_inet_ingress"},
	"raw_tracepoint_writable": {"cgroup_inet_ingress"},
	"cgroup_sockopt":          {"cgroup_getsockopt", "cgroup_setsockopt"},
	"tracing":                 {"trace_fentry", "trace_fexit", "trace_raw_tp", "modify_return", "trace_iter"},
	"struct_ops":              {"cgroup_inet_ingress"},
	"ext":                     {"cgroup_inet_ingress"},
	"lsm":                     {"lsm_mac", "lsm_cgroup"},
	"sk_lookup":               {"sk_lookup"},
	"syscall":                 {"cgroup_inet_ingress"},
	"netfilter":               {"netfilter"},
}

// AttachTypesFor returns the attach types that loads of program type prog
// (a short name) carry, the default first.
func AttachTypesFor(prog string) []string { return attachTypesOf[prog] }

// Lint returns the traps in s: delegations the kernel accepts that will not
// work as meant, or grant more than needed.
func (n *Names) Lint(s Set) []Warning {
	s = n.Canonical(s)
	var ws []Warning
	add := func(code, format string, args ...any) {
		ws = append(ws, Warning{code, fmt.Sprintf(format, args...)})
	}
	has := func(k Kind, name string) bool {
		v, ok := n.Lookup(k, name)
		return ok && s.Has(k, v)
	}
	known := func(k Kind, name string) bool { _, ok := n.Lookup(k, name); return ok }

	if s.Cmds != 0 && s.Cmds == n.Enums[Cmds].Any() {
		add("cmds-any", "delegate_cmds=any also grants every command a future kernel adds; list the commands the workload needs")
	}
	if s.Maps != 0 && !has(Cmds, "map_create") {
		add("maps-without-map-create", "delegate_maps has no effect without delegate_cmds=map_create")
	}
	if s.Progs != 0 && !has(Cmds, "prog_load") {
		add("progs-without-prog-load", "delegate_progs has no effect without delegate_cmds=prog_load")
	}
	if s.Attachs != 0 && s.Progs == 0 {
		add("attachs-without-progs", "delegate_attachs has no effect without delegate_progs")
	}
	if has(Cmds, "prog_load") {
		if !has(Cmds, "btf_load") {
			add("prog-load-without-btf-load", "prog_load is delegated without btf_load: cilium/ebpf and libbpf load BTF for programs and maps, and fail or lose features without it")
		}
		if !has(Cmds, "map_create") {
			add("prog-load-without-map-create", "prog_load is delegated without map_create: most programs use maps (and global variables are maps)")
		}
	}

	progs, _ := n.Split(Progs, s.Progs)
	for _, p := range progs {
		attachs := attachTypesOf[p]
		if len(attachs) == 0 {
			continue
		}
		if attachs[0] == "cgroup_inet_ingress" && !has(Attachs, "cgroup_inet_ingress") {
			add("attach-type-zero", "program type %s is delegated without attach type cgroup_inet_ingress: a load with expected_attach_type 0 (the default) is checked as cgroup_inet_ingress and denied with EPERM; add delegate_attachs=cgroup_inet_ingress", p)
			continue
		}
		any := false
		var valid []string
		for _, a := range attachs {
			if !known(Attachs, a) {
				continue
			}
			valid = append(valid, a)
			any = any || has(Attachs, a)
		}
		if !any && len(valid) > 0 {
			add("missing-attach-type", "program type %s is delegated without any attach type it loads with (%s); its loads are denied with EPERM", p, strings.Join(valid, ", "))
		}
	}
	return ws
}

// LintOption warns about option values the kernel itself would read
// differently from bpfgate: the kernel's parser lets a number replace the
// values listed before it in the same option (delegate_cmds=prog_load:0x1 is
// map_create alone). bpfgate ORs them and always hands the kernel one
// canonical value, but the same string in fstab or mount(8) would not.
func LintOption(k Kind, value string) []Warning {
	parts := strings.Split(value, ":")
	for i, p := range parts {
		if i == 0 || p == "" {
			continue
		}
		if _, err := parseKernelNumber(p); err == nil {
			return []Warning{{"number-after-names", fmt.Sprintf(
				"%s=%s: the kernel's own parser lets the number %q replace the values listed before it; bpfgate ORs them, but mount(8) or fstab with this string would not", k.Option(), value, p)}}
		}
	}
	return nil
}
