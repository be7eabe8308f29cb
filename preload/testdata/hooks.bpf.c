// SPDX-License-Identifier: GPL-2.0-only
// One program for every hook preload attaches, each counting its calls in
// its own slot of one map. Built by build.sh; the object is committed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { XDP, TCX, TRACEPOINT, KPROBE, FENTRY, CGROUP, ITER, NR };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 8);
} counts SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	count(XDP);
	return XDP_PASS;
}

SEC("tcx/ingress")
int tcx_count(struct __sk_buff *skb)
{
	count(TCX);
	return -1; /* TCX_NEXT */
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_count(void *ctx)
{
	count(TRACEPOINT);
	return 0;
}

SEC("kprobe/do_unlinkat")
int kprobe_count(void *ctx)
{
	count(KPROBE);
	return 0;
}

SEC("fentry/do_unlinkat")
int fentry_count(void *ctx)
{
	count(FENTRY);
	return 0;
}

SEC("cgroup_skb/ingress")
int cgroup_count(struct __sk_buff *skb)
{
	count(CGROUP);
	return 1;
}

SEC("iter/bpf_map")
int iter_count(void *ctx)
{
	count(ITER);
	return 0;
}

SEC("socket")
int unattached(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
