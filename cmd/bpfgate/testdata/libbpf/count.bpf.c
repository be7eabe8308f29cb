// SPDX-License-Identifier: GPL-2.0
// A socket filter that counts packets per protocol in a hash map: what a
// libbpf workload under `bpfgate run --profile demo` may load. Rebuild the
// committed count.bpf.o with ./build.sh (needs clang).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} packets SEC(".maps");

SEC("socket")
int count_packets(struct __sk_buff *skb)
{
	__u32 proto = skb->protocol;
	__u64 one = 1, *n = bpf_map_lookup_elem(&packets, &proto);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&packets, &proto, &one, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
