//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// An XDP program that counts the packets and bytes an interface receives,
// in a map that outlives upgrades of the program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { PACKETS, BYTES, NR_COUNTERS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NR_COUNTERS);
} counts SEC(".maps");

static __always_inline void add(__u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, n);
}

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	add(PACKETS, 1);
	add(BYTES, ctx->data_end - ctx->data);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
