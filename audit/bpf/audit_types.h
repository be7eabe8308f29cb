/* The kernel types the audit tracer reads, declared with only the fields it
 * uses. preserve_access_index makes every access a CO-RE relocation: libbpf
 * (cilium/ebpf here) finds each field's offset in the running kernel's BTF at
 * load time, so this header needs no vmlinux.h and no kernel headers. */
#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_ANY 0
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0
#define BPF_RB_RING_SIZE 1

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct pt_regs {
	unsigned long bx;
	unsigned long cx;
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long orig_ax;
};

struct ns_common {
	unsigned int inum;
};

struct user_namespace {
	struct ns_common ns;
};

struct cred {
	struct user_namespace *user_ns;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
};

struct super_block {
	unsigned int s_dev;
	unsigned long s_magic;
};

struct vfsmount {
	struct super_block *mnt_sb;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct inode {
	unsigned short i_mode;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct thread_info {
	__u32 status;
};

struct task_struct {
	struct thread_info thread_info;
	const struct cred *cred;
	struct files_struct *files;
};

struct bpf_token {
	struct user_namespace *userns;
	__u64 allowed_cmds;
	__u64 allowed_maps;
	__u64 allowed_progs;
	__u64 allowed_attachs;
};

/* Enums: CO-RE matches a field's type by kind and name, so these carry the
 * kernel's enum names (their values are not used). */
enum bpf_map_type { AUDIT_MAP_TYPE_ANY };
enum bpf_prog_type { AUDIT_PROG_TYPE_ANY };
enum bpf_attach_type { AUDIT_ATTACH_TYPE_ANY };

struct bpf_map {
	enum bpf_map_type map_type;
	__u32 id;
};

struct bpf_prog_aux {
	__u32 id;
};

struct bpf_prog {
	enum bpf_prog_type type;
	enum bpf_attach_type expected_attach_type;
	struct bpf_prog_aux *aux;
};

#pragma clang attribute pop
