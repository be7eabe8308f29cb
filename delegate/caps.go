package delegate

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability number.
type Cap int

var capNames = map[string]Cap{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_FOWNER": unix.CAP_FOWNER,
	"CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
	"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK, "CAP_IPC_OWNER": unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT": unix.CAP_SYS_PACCT, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_LEASE": unix.CAP_LEASE,
	"CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE, "CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN, "CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ,
	"CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// ParseCap accepts CAP_NET_ADMIN, net_admin or a number.
func ParseCap(s string) (Cap, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	if c, ok := capNames[name]; ok {
		return c, nil
	}
	// A number, bare or as String prints unnamed ones (CAP_41).
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "CAP_")); err == nil && n >= 0 && n < 64 {
		return Cap(n), nil
	}
	return 0, fmt.Errorf("unknown capability %q (want a name like CAP_NET_ADMIN)", s)
}

// ParseCaps parses a list of capabilities.
func ParseCaps(list []string) ([]Cap, error) {
	var out []Cap
	for _, s := range list {
		if s == "" {
			continue
		}
		c, err := ParseCap(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (c Cap) String() string {
	for name, v := range capNames {
		if v == c {
			return name
		}
	}
	return "CAP_" + strconv.Itoa(int(c))
}

// The kernel checks these capabilities, in the token's user namespace, on
// top of CAP_BPF: CAP_NET_ADMIN for networking program and map types and
// CAP_PERFMON for tracing ones (is_net_admin_prog_type, is_perfmon_prog_type
// and map_create in kernel/bpf/syscall.c).
var (
	netAdminProgs = []string{"sched_cls", "sched_act", "xdp", "lwt_in", "lwt_out", "lwt_xmit",
		"lwt_seg6local", "sk_skb", "sk_msg", "flow_dissector", "cgroup_device", "cgroup_sock",
		"cgroup_sock_addr", "cgroup_sockopt", "cgroup_sysctl", "sock_ops", "ext", "netfilter"}
	netAdminMaps = []string{"sockmap", "sockhash", "devmap", "devmap_hash", "xskmap", "cpumap"}
	perfmonProgs = []string{"kprobe", "tracepoint", "perf_event", "raw_tracepoint",
		"raw_tracepoint_writable", "tracing", "lsm", "struct_ops", "ext"}
)

// CapsFor returns the capabilities a workload needs inside its user
// namespace to use every type in set: CAP_BPF, plus CAP_NET_ADMIN and
// CAP_PERFMON where the delegated types call for them.
func CapsFor(names *Names, set Set) []Cap {
	caps := []Cap{unix.CAP_BPF}
	has := func(k Kind, list []string) bool {
		for _, name := range list {
			if v, ok := names.Lookup(k, name); ok && set.Has(k, v) {
				return true
			}
		}
		return false
	}
	if has(Progs, netAdminProgs) || has(Maps, netAdminMaps) {
		caps = append(caps, unix.CAP_NET_ADMIN)
	}
	if has(Progs, perfmonProgs) {
		caps = append(caps, unix.CAP_PERFMON)
	}
	return caps
}
