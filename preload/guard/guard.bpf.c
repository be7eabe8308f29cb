//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
// bpfgate's preload guard: BPF LSM programs that refuse changes to a bpffs
// tree (the preload root), to the guard's own maps, programs and links, and
// to what would switch the guard off, to every process but the manager.
//
// The tree is identified by its directory's inode (s_dev, i_ino) and its
// bpffs superblock (s_dev), never by a path. The manager is any process
// whose executable is a recorded inode (s_dev, i_ino): a copy of bpfgate is
// another inode and is not the manager. The maps are filled by userspace;
// BPF_F_RDONLY_PROG keeps the programs from ever writing them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <stdbool.h>
#include "kernel.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define MAY_WRITE 0x2
#define FMODE_WRITE 0x2
#define PROC_SUPER_MAGIC 0x9fa0

/* mount(2) flags that change a mount without putting anything over it */
#define MS_REMOUNT 32
#define MS_UNBINDABLE (1 << 17)
#define MS_PRIVATE (1 << 18)
#define MS_SLAVE (1 << 19)
#define MS_SHARED (1 << 20)

struct inode_key {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

/* Directories whose subtree is protected. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__uint(max_entries, 16);
	__type(key, struct inode_key);
	__type(value, __u8);
} guard_inodes SEC(".maps");

/* bpffs superblocks holding a protected tree: no umount, nothing mounted
 * over any of their directories. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u8);
} guard_sbs SEC(".maps");

/* The objects protected by id, key kind<<32 | id: the guard's own, and what
 * is pinned in the tree, its links' programs and their maps (Sync).
 * KIND_MAP_NOFD: maps of which nobody but the manager gets an fd from the
 * id (guard_mnt, which programs write and so any program could).
 * KIND_MAP_ROFD: maps of which nobody but the manager gets a write-mode
 * fd at all (the guard's own). */
#define KIND_LINK 1ULL
#define KIND_MAP 2ULL
#define KIND_PROG 3ULL
#define KIND_MAP_NOFD 4ULL
#define KIND_MAP_ROFD 5ULL
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} guard_ids SEC(".maps");

/* The manager's executables. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__uint(max_entries, 4);
	__type(key, struct inode_key);
	__type(value, __u8);
} guard_exes SEC(".maps");

/* The mount through which the manager opened the protected directory at
 * enable (a struct mount *, written by guard_file_open): unmounting it or,
 * lazily, any mount above it would take the bpffs, and every pin in it,
 * away. BPF_F_RDONLY keeps syscalls from writing it; a program, anyone's,
 * could (a program may use a map through any fd of it, a read-only one
 * too), so it is not pinned and guard_bpf refuses fds of it by id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_RDONLY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} guard_mnt SEC(".maps");

/* Per hook: [2*hook] operations refused, [2*hook+1] operations of the
 * manager let through (enable checks that the guard recognises it). */
#define NHOOKS 17
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NHOOKS);
	__type(key, __u32);
	__type(value, __u64);
} guard_counts SEC(".maps");

enum hook {
	H_UNLINK,
	H_RMDIR,
	H_RENAME,
	H_CREATE,
	H_MKDIR,
	H_SYMLINK,
	H_LINK,
	H_SETATTR,
	H_PERMISSION,
	H_UMOUNT,
	H_MOUNT,
	H_MOVE_MOUNT,
	H_BPF,
	H_FILE_OPEN,
	H_PTRACE,
	H_EXEC,
	H_PRCTL,
};

static __always_inline void count(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&guard_counts, &i);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline bool inode_key_of(struct inode *inode, struct inode_key *k)
{
	if (!inode)
		return false;
	k->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k->pad = 0;
	k->ino = BPF_CORE_READ(inode, i_ino);
	return true;
}

static __always_inline bool is_exe(struct inode *inode)
{
	struct inode_key k = {};
	return inode_key_of(inode, &k) && bpf_map_lookup_elem(&guard_exes, &k);
}

static __always_inline bool task_is_manager(struct task_struct *t)
{
	return is_exe(BPF_CORE_READ(t, mm, exe_file, f_inode));
}

static __always_inline bool is_manager(void)
{
	return task_is_manager((struct task_struct *)bpf_get_current_task());
}

/* deny refuses, unless the caller is the manager. */
static __always_inline int deny(enum hook h)
{
	if (is_manager()) {
		count(2 * h + 1);
		return 0;
	}
	count(2 * h);
	return -EPERM;
}

static __always_inline bool sb_protected(struct super_block *sb)
{
	__u32 dev = BPF_CORE_READ(sb, s_dev);
	return sb && bpf_map_lookup_elem(&guard_sbs, &dev);
}

/* The dentry or one of its ancestors (16 levels up) is a protected
 * directory. A negative dentry (a name being created) counts by its
 * parent. */
static __always_inline bool dentry_protected(struct dentry *d)
{
	struct inode_key k = {};

	if (!d || !sb_protected(BPF_CORE_READ(d, d_parent, d_inode, i_sb)))
		return false;
	for (int i = 0; i < 16 && d; i++) {
		if (inode_key_of(BPF_CORE_READ(d, d_inode), &k) && bpf_map_lookup_elem(&guard_inodes, &k))
			return true;
		struct dentry *p = BPF_CORE_READ(d, d_parent);
		if (p == d)
			break;
		d = p;
	}
	return false;
}

/* Also of a name of the manager's executable: once its last name and
 * user were gone, the filesystem could give its inode number to a new file,
 * which would then be the manager. */
SEC("lsm/inode_unlink")
int BPF_PROG(guard_unlink, struct inode *dir, struct dentry *dentry)
{
	if (dentry_protected(dentry) || is_exe(BPF_CORE_READ(dentry, d_inode)))
		return deny(H_UNLINK);
	return 0;
}

SEC("lsm/inode_rmdir")
int BPF_PROG(guard_rmdir, struct inode *dir, struct dentry *dentry)
{
	return dentry_protected(dentry) ? deny(H_RMDIR) : 0;
}

SEC("lsm/inode_rename")
int BPF_PROG(guard_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry)
{
	/* Renaming over the manager's executable unlinks it (above). */
	if (dentry_protected(old_dentry) || dentry_protected(new_dentry) || is_exe(BPF_CORE_READ(new_dentry, d_inode)))
		return deny(H_RENAME);
	return 0;
}

/* Pins (BPF_OBJ_PIN) come through here too. */
SEC("lsm/inode_create")
int BPF_PROG(guard_create, struct inode *dir, struct dentry *dentry, unsigned short mode)
{
	return dentry_protected(dentry) ? deny(H_CREATE) : 0;
}

SEC("lsm/inode_mkdir")
int BPF_PROG(guard_mkdir, struct inode *dir, struct dentry *dentry, unsigned short mode)
{
	return dentry_protected(dentry) ? deny(H_MKDIR) : 0;
}

SEC("lsm/inode_symlink")
int BPF_PROG(guard_symlink, struct inode *dir, struct dentry *dentry, const char *name)
{
	return dentry_protected(dentry) ? deny(H_SYMLINK) : 0;
}

SEC("lsm/inode_link")
int BPF_PROG(guard_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
{
	return dentry_protected(old_dentry) || dentry_protected(new_dentry) ? deny(H_LINK) : 0;
}

/* chmod, chown, truncate, utimes; also of the manager's executable. */
SEC("lsm/inode_setattr")
int BPF_PROG(guard_setattr, struct mnt_idmap *idmap, struct dentry *dentry, struct iattr *attr)
{
	if (dentry_protected(dentry) || is_exe(BPF_CORE_READ(dentry, d_inode)))
		return deny(H_SETATTR);
	return 0;
}

/* Opening a pin for writing (bpftool map update pinned ..., link detach
 * pinned ...). The inode's first alias stands for its place in the tree. */
SEC("lsm/inode_permission")
int BPF_PROG(guard_permission, struct inode *inode, int mask)
{
	if (!(mask & MAY_WRITE) || !sb_protected(BPF_CORE_READ(inode, i_sb)))
		return 0;
	struct hlist_node *first = BPF_CORE_READ(inode, i_dentry.first);
	if (!first)
		return 0;
	struct dentry *d = (void *)first - bpf_core_field_offset(struct dentry, d_u.d_alias);
	return dentry_protected(d) ? deny(H_PERMISSION) : 0;
}

/* Unmounting the tree's mount, or (lazily) any mount above it. Other mounts
 * of the same bpffs (bind mounts in containers) may go: the tree's mount
 * keeps the bpffs alive. Before enable has recorded the tree's mount, every
 * mount of the bpffs is refused. */
SEC("lsm/sb_umount")
int BPF_PROG(guard_umount, struct vfsmount *mnt, int flags)
{
	__u32 zero = 0;
	__u64 *rec = bpf_map_lookup_elem(&guard_mnt, &zero);
	__u64 v = 0;

	if (!rec || !*rec)
		return sb_protected(BPF_CORE_READ(mnt, mnt_sb)) ? deny(H_UMOUNT) : 0;
	/* the struct mount around mnt, as a number to compare */
	bpf_probe_read_kernel(&v, sizeof(v), &ctx[0]);
	__u64 m = v - bpf_core_field_offset(struct mount, mnt);
	struct mount *p = (struct mount *)*rec;
	for (int i = 0; i < 32 && p; i++) {
		if ((__u64)p == m)
			return deny(H_UMOUNT);
		struct mount *up = BPF_CORE_READ(p, mnt_parent);
		if (up == p)
			break;
		p = up;
	}
	return 0;
}

/* Mounting over the tree's bpffs, or over any directory in it, would hide
 * the tree. Remounts and propagation changes hide nothing, and container
 * runtimes make them on bind mounts of /sys/fs/bpf. */
SEC("lsm/sb_mount")
int BPF_PROG(guard_mount, const char *dev_name, const struct path *path, const char *type, unsigned long flags,
	     void *data)
{
	if (flags & (MS_REMOUNT | MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED))
		return 0;
	return sb_protected(BPF_CORE_READ(path, mnt, mnt_sb)) ? deny(H_MOUNT) : 0;
}

SEC("lsm/move_mount")
int BPF_PROG(guard_move_mount, const struct path *from_path, const struct path *to_path)
{
	return sb_protected(BPF_CORE_READ(to_path, mnt, mnt_sb)) ? deny(H_MOVE_MOUNT) : 0;
}

/* The id of the map ('m'), program ('p') or link ('l') behind the calling
 * task's file descriptor, or 0 if it is not one. A wrong guess can only
 * refuse (the kernel checks the fd itself next), never let through. */
static __always_inline __u32 obj_id_of_fd(int fd, char kind)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **arr;
	struct file *f = 0;
	char name[5] = {};

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	arr = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]);
	if (!f)
		return 0;
	bpf_probe_read_kernel(name, sizeof(name), BPF_CORE_READ(f, f_path.dentry, d_name.name));
	/* anon inodes: bpf-map, bpf-prog, bpf_link */
	if (name[0] != 'b' || name[1] != 'p' || name[2] != 'f' || (name[3] != '-' && name[3] != '_') || name[4] != kind)
		return 0;
	void *obj = BPF_CORE_READ(f, private_data);
	if (kind == 'm')
		return BPF_CORE_READ((struct bpf_map *)obj, id);
	if (kind == 'p')
		return BPF_CORE_READ((struct bpf_prog *)obj, aux, id);
	return BPF_CORE_READ((struct bpf_link *)obj, id);
}

static __always_inline bool fd_protected(union bpf_attr *attr, __u32 off, __u64 kind, char k)
{
	__u32 fd = 0;
	bpf_probe_read_kernel(&fd, sizeof(fd), (void *)attr + off);
	__u32 id = obj_id_of_fd((int)fd, k);
	__u64 key = kind << 32 | id;
	return id && bpf_map_lookup_elem(&guard_ids, &key);
}

#define OFF(f) __builtin_offsetof(union bpf_attr, f)

/* Writes to the guard's maps, detaching or updating its links, and
 * programs that would attach to its programs (fentry, freplace). Reading
 * stays allowed, so bpftool and bpfgate ls keep working. */
SEC("lsm/bpf")
int BPF_PROG(guard_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	bool p = false;

	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_FREEZE:
		p = fd_protected(attr, OFF(map_fd), KIND_MAP, 'm');
		break;
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
		p = fd_protected(attr, OFF(batch.map_fd), KIND_MAP, 'm');
		break;
	case BPF_LINK_DETACH:
		p = fd_protected(attr, OFF(link_detach.link_fd), KIND_LINK, 'l');
		break;
	case BPF_LINK_UPDATE:
		p = fd_protected(attr, OFF(link_update.link_fd), KIND_LINK, 'l');
		break;
	case BPF_PROG_LOAD:
		p = fd_protected(attr, OFF(attach_prog_fd), KIND_PROG, 'p');
		break;
	case BPF_LINK_CREATE:
		p = fd_protected(attr, OFF(link_create.target_fd), KIND_PROG, 'p');
		break;
	case BPF_MAP_GET_FD_BY_ID: {
		/* the kernel's copy of the attr: no fd to swap */
		__u32 id = 0;
		bpf_probe_read_kernel(&id, sizeof(id), (void *)attr + OFF(map_id));
		__u64 key = KIND_MAP_NOFD << 32 | id;
		p = bpf_map_lookup_elem(&guard_ids, &key);
		break;
	}
	}
	return p ? deny(H_BPF) : 0;
}

/* A write-mode fd of one of the guard's maps or of the tree's (from its
 * id, its pin, or at all): guard_bpf reads an fd's object before the
 * kernel takes it, so a thread's dup2 in between would let an update
 * through: of guard_exes, which makes its caller the manager (and so
 * undoes Lock), or of a preloaded map. A read-only fd can neither update
 * nor be mapped shared and writable (BPF_F_MMAPABLE maps). bpftool
 * versions that open maps read-write even to show or dump them stop at
 * these maps; bpfgate ls, the manager, lists them. */
SEC("lsm/bpf_map")
int BPF_PROG(guard_bpf_map, struct bpf_map *map, unsigned int fmode)
{
	if (!(fmode & FMODE_WRITE))
		return 0;
	__u32 id = BPF_CORE_READ(map, id);
	__u64 own = KIND_MAP_ROFD << 32 | id, tree = KIND_MAP << 32 | id;
	if (bpf_map_lookup_elem(&guard_ids, &own) || bpf_map_lookup_elem(&guard_ids, &tree))
		return deny(H_BPF);
	return 0;
}

static __always_inline bool name_is(struct dentry *d, const char *want, int n)
{
	char got[16] = {};

	bpf_probe_read_kernel_str(got, sizeof(got), BPF_CORE_READ(d, d_name.name));
	for (int i = 0; i < n && i < 16; i++)
		if (got[i] != want[i])
			return false;
	return true;
}

/* Writing 0 to /proc/sys/kernel/ftrace_enabled stops the ftrace call sites
 * that BPF trampolines, and so every BPF LSM program, hang on. Writing the
 * manager's executable in place would make other code the manager. */
SEC("lsm/file_open")
int BPF_PROG(guard_file_open, struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct inode_key k = {};
	__u32 zero = 0;

	/* enable opens the protected directory: record through which mount */
	if (sb_protected(BPF_CORE_READ(inode, i_sb)) && inode_key_of(inode, &k) &&
	    bpf_map_lookup_elem(&guard_inodes, &k) && is_manager()) {
		__u64 *rec = bpf_map_lookup_elem(&guard_mnt, &zero);
		if (rec && !*rec)
			*rec = (__u64)BPF_CORE_READ(file, f_path.mnt) - bpf_core_field_offset(struct mount, mnt);
	}
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE))
		return 0;
	if (is_exe(inode))
		return deny(H_FILE_OPEN);
	if (BPF_CORE_READ(inode, i_sb, s_magic) != PROC_SUPER_MAGIC)
		return 0;
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	if (name_is(d, "ftrace_enabled", 15) && name_is(BPF_CORE_READ(d, d_parent), "kernel", 7))
		return deny(H_FILE_OPEN);
	return 0;
}

/* ptrace, /proc/PID/mem, process_vm_writev and pidfd_getfd on a manager
 * process would run other code as the manager. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(guard_ptrace, struct task_struct *child, unsigned int mode)
{
	return task_is_manager(child) ? deny(H_PTRACE) : 0;
}

SEC("lsm/ptrace_traceme")
int BPF_PROG(guard_traceme, struct task_struct *parent)
{
	return is_manager() && !task_is_manager(parent) ? deny(H_PTRACE) : 0;
}

/* A traced process may not become the manager by exec. */
SEC("lsm/bprm_check_security")
int BPF_PROG(guard_exec, struct linux_binprm *bprm)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(t, ptrace) && is_exe(BPF_CORE_READ(bprm, file, f_inode)))
		return deny(H_EXEC);
	return 0;
}

#define ENOSYS 38
#define PR_SET_MM 35
#define PR_SET_MM_EXE_FILE 13
#define PR_SET_MM_MAP 14
/* offsetof(struct prctl_mm_map, exe_fd) */
#define PRCTL_MM_MAP_EXE_FD 100

/* The file behind the calling task's file descriptor. */
static __always_inline struct file *file_of_fd(int fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **arr;
	struct file *f = 0;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	arr = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]);
	return f;
}

/* prctl(PR_SET_MM, PR_SET_MM_EXE_FILE or PR_SET_MM_MAP) would make the
 * caller's executable link the manager's file. task_prctl is a hook whose
 * "not mine" answer is -ENOSYS: 0 would end every prctl(2) unperformed. */
SEC("lsm/task_prctl")
int BPF_PROG(guard_prctl, int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
	     unsigned long arg5)
{
	__u32 fd = (__u32)arg3;

	if (option != PR_SET_MM || (arg2 != PR_SET_MM_EXE_FILE && arg2 != PR_SET_MM_MAP))
		return -ENOSYS;
	if (arg2 == PR_SET_MM_MAP) {
		/* unreadable: refuse rather than guess */
		if (bpf_probe_read_user(&fd, sizeof(fd), (void *)arg3 + PRCTL_MM_MAP_EXE_FD))
			return deny(H_PRCTL) ? -EPERM : -ENOSYS;
		if (fd == (__u32)-1)
			return -ENOSYS;
	}
	struct file *f = file_of_fd((int)fd);
	if (f && is_exe(BPF_CORE_READ(f, f_inode)) && deny(H_PRCTL))
		return -EPERM;
	return -ENOSYS;
}
