//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
// BPF iterators that print every map and program in the system when their
// pinned links are read, like the kernel's own maps.debug and progs.debug:
//
//	cat /sys/fs/bpf/bpfgate/iterators/links/dump_bpf_map
//
// The kernel types are declared with only the fields used; CO-RE relocates
// them against the running kernel's BTF, so no vmlinux.h is needed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __core __attribute__((preserve_access_index))

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 seq_num;
} __core;

struct bpf_map {
	__u32 id;
	char name[16];
	__u32 max_entries;
	__u32 key_size;
	__u32 value_size;
} __core;

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __core;

struct bpf_prog_aux {
	__u32 id;
	char name[16];
	const char *attach_func_name;
} __core;

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __core;

struct bpf_iter__bpf_prog {
	struct bpf_iter_meta *meta;
	struct bpf_prog *prog;
} __core;

SEC("iter/bpf_map")
int dump_bpf_map(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;

	if (!map)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "    id name             key value max_entries\n");
	BPF_SEQ_PRINTF(seq, "%6u %-16s %3u %5u %11u\n", map->id, map->name,
		       map->key_size, map->value_size, map->max_entries);
	return 0;
}

SEC("iter/bpf_prog")
int dump_bpf_prog(struct bpf_iter__bpf_prog *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_prog *prog = ctx->prog;
	const char *target;

	if (!prog)
		return 0;
	if (ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(seq, "    id name             attached to\n");
	target = prog->aux->attach_func_name;
	BPF_SEQ_PRINTF(seq, "%6u %-16s %s\n", prog->aux->id, prog->aux->name,
		       target ? target : "");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
