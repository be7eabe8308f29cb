/* SPDX-License-Identifier: GPL-2.0-only */
/* The few kernel types the guard reads, with only the fields it reads.
 * preserve_access_index makes clang record each access as a CO-RE
 * relocation, which the loader fixes up against the running kernel's BTF,
 * so no vmlinux.h is needed. Every read goes through BPF_CORE_READ (a
 * bpf_probe_read_kernel), which returns zeroes for a NULL pointer instead
 * of faulting. */
#ifndef BPFGATE_GUARD_KERNEL_H
#define BPFGATE_GUARD_KERNEL_H

#define __core __attribute__((preserve_access_index))

struct super_block {
	__u32 s_dev;
	unsigned long s_magic;
} __core;

struct hlist_node {
	struct hlist_node *next;
} __core;

struct hlist_head {
	struct hlist_node *first;
} __core;

struct inode {
	struct super_block *i_sb;
	unsigned long i_ino;
	struct hlist_head i_dentry;
} __core;

struct qstr {
	const unsigned char *name;
} __core;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	union {
		struct hlist_node d_alias;
	} d_u;
} __core;

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
} __core;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __core;

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_mode;
	void *private_data;
} __core;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __core;

struct files_struct {
	struct fdtable *fdt;
} __core;

struct mm_struct {
	struct file *exe_file;
} __core;

struct task_struct {
	unsigned int ptrace;
	struct mm_struct *mm;
	struct files_struct *files;
} __core;

struct linux_binprm {
	struct file *file;
} __core;

struct bpf_map {
	__u32 id;
} __core;

struct bpf_prog_aux {
	__u32 id;
} __core;

struct bpf_prog {
	struct bpf_prog_aux *aux;
} __core;

struct bpf_link {
	__u32 id;
} __core;

/* fs/mount.h: a mount, around the vfsmount the hooks get. */
struct mount {
	struct mount *mnt_parent;
	struct vfsmount mnt;
} __core;

/* Only passed through. */
struct mnt_idmap;
struct iattr;

#endif
