// SPDX-License-Identifier: GPL-2.0
/* bpfgate audit: one record per bpf(2) call made with a BPF token, and per
 * call refused with EPERM in a user namespace other than the host's (a
 * delegated workload asking for what it was not given).
 *
 * Everything is read at syscall exit, from one program: there is no enter
 * program and no per-thread map of calls in flight, so a bpf(2) call that is
 * not recorded costs a few loads, and other system calls only the kernel's
 * test of its bitmap of traced syscalls (the sys_exit_bpf tracepoint) or one
 * compare (the tp_btf/sys_exit fallback). Kernel pointers are read with CO-RE
 * reads only. */
#include "audit_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define NR_BPF 321   /* x86-64 */
#define NR_BPF32 357 /* i386, int 0x80 */
#define X32_SYSCALL_BIT 0x40000000 /* x32 calls: the 64-bit number with this bit */
#define TS_COMPAT 0x0002 /* thread_info.status: in a 32-bit syscall */
#define EPERM 1
#define BPF_FS_MAGIC 0xcafe4a11
#define S_IFMT 00170000
#define S_IFREG 0100000

#define CMD_MAP_CREATE 0
#define CMD_PROG_LOAD 5
#define CMD_BTF_LOAD 18
#define F_TOKEN_FD (1U << 16)

#define ATTR_LEN 160

/* event.flags */
#define EV_TOKEN 1  /* token_* were read from the token the call passed */
#define EV_OBJECT 2 /* obj_* were read from the object the call created */
#define EV_COMPAT 4 /* a 32-bit call (int 0x80, sysenter) */
#define EV_X32 8    /* an x32 call */

struct event {
	__u64 ktime;
	__u64 cgroup_id;
	__s64 ret;
	__u64 token_allowed[4]; /* cmds, maps, progs, attachs */
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 userns;
	__u32 cmd;
	__u32 attr_len; /* bytes of attr copied */
	__s32 token_fd; /* the fd passed with BPF_F_TOKEN_FD, -1 if none */
	__u32 token_userns;
	__u32 token_dev; /* s_dev of the token's bpffs */
	__u32 flags;
	__u32 obj_type;
	__u32 obj_attach_type;
	__u32 obj_id;
	char comm[16];
	__u8 attr[ATTR_LEN];
};

/* An event's room in the ring: 8 bytes of header, 8-byte aligned. */
#define RECORD_SIZE ((sizeof(struct event) + 8 + 7) & ~7UL)

/* filter: zero fields match everything. */
struct filter {
	__u64 cgroup_id;
	__u32 tgid;
	__u32 userns;
};

/* PROC_USER_INIT_INO: the host's user namespace, a fixed number. */
#define init_userns 0xEFFFFFFDU

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter);
} filters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* resized from user space */
} events SEC(".maps");

/* Puts struct event into BTF for bpf2go (-type event). It is not called,
 * so it is not loaded; a global variable would be, as a map of its own. */
__attribute__((noinline)) int audit_event_type(struct event *e)
{
	return e != 0;
}

static __always_inline struct file *fd_file(struct task_struct *t, int fd)
{
	struct file **arr;
	struct file *f = 0;

	if (fd < 0)
		return 0;
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	arr = BPF_CORE_READ(fdt, fd);
	if (bpf_core_read(&f, sizeof(f), &arr[fd]))
		return 0;
	return f;
}

/* name_is compares a dentry's name with a short literal, NUL included. */
static __always_inline int name_is(struct file *f, const char *want, int n)
{
	char name[12] = {};
	const unsigned char *p = BPF_CORE_READ(f, f_path.dentry, d_name.name);

	if (bpf_probe_read_kernel_str(name, sizeof(name), p) != n + 1)
		return 0;
	for (int i = 0; i < n && i < (int)sizeof(name); i++)
		if (name[i] != want[i])
			return 0;
	return 1;
}

/* read_token fills token_* from fd if it is a BPF token: a regular file
 * named bpf-token on a bpffs, on a pseudo dentry (its own parent), which no
 * pin nor directory a workload makes can be. */
static __always_inline void read_token(struct task_struct *t, int fd, struct event *e)
{
	struct file *f = fd_file(t, fd);

	if (!f)
		return;
	struct super_block *sb = BPF_CORE_READ(f, f_path.mnt, mnt_sb);
	if (BPF_CORE_READ(sb, s_magic) != BPF_FS_MAGIC)
		return;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	if (BPF_CORE_READ(d, d_parent) != d)
		return;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFREG)
		return;
	if (!name_is(f, "bpf-token", 9))
		return;
	struct bpf_token *tok = BPF_CORE_READ(f, private_data);
	if (!tok)
		return;
	e->token_dev = BPF_CORE_READ(sb, s_dev);
	e->token_userns = BPF_CORE_READ(tok, userns, ns.inum);
	/* The four masks follow each other: one read (checked at load time
	 * by the relocations of the first and last). */
	if (bpf_core_field_offset(tok->allowed_attachs) - bpf_core_field_offset(tok->allowed_cmds) == 24) {
		bpf_core_read(e->token_allowed, sizeof(e->token_allowed), &tok->allowed_cmds);
	} else {
		e->token_allowed[0] = BPF_CORE_READ(tok, allowed_cmds);
		e->token_allowed[1] = BPF_CORE_READ(tok, allowed_maps);
		e->token_allowed[2] = BPF_CORE_READ(tok, allowed_progs);
		e->token_allowed[3] = BPF_CORE_READ(tok, allowed_attachs);
	}
	e->flags |= EV_TOKEN;
}

/* read_object fills obj_* from the map or program the call returned as fd:
 * the kernel's own type, whatever user memory says now. */
static __always_inline void read_object(struct task_struct *t, int fd, struct event *e)
{
	struct file *f = fd_file(t, fd);

	if (!f)
		return;
	void *obj = BPF_CORE_READ(f, private_data);
	if (!obj)
		return;
	if (e->cmd == CMD_MAP_CREATE && name_is(f, "bpf-map", 7)) {
		e->obj_type = BPF_CORE_READ((struct bpf_map *)obj, map_type);
		e->obj_id = BPF_CORE_READ((struct bpf_map *)obj, id);
		e->flags |= EV_OBJECT;
	} else if (e->cmd == CMD_PROG_LOAD && name_is(f, "bpf-prog", 8)) {
		e->obj_type = BPF_CORE_READ((struct bpf_prog *)obj, type);
		e->obj_attach_type = BPF_CORE_READ((struct bpf_prog *)obj, expected_attach_type);
		e->obj_id = BPF_CORE_READ((struct bpf_prog *)obj, aux, id);
		e->flags |= EV_OBJECT;
	}
}

/* token_fd_of reads the flags and token fd of a call that can carry one. */
static __always_inline int token_fd_of(__u32 cmd, const void *uattr)
{
	__u32 flags = 0;
	__s32 fd = -1;
	int fl_off, fd_off;

	switch (cmd) {
	case CMD_MAP_CREATE:
		fl_off = 16, fd_off = 76;
		break;
	case CMD_PROG_LOAD:
		fl_off = 44, fd_off = 144;
		break;
	case CMD_BTF_LOAD:
		fl_off = 32, fd_off = 36;
		break;
	default:
		return -1;
	}
	if (bpf_probe_read_user(&flags, sizeof(flags), uattr + fl_off) || !(flags & F_TOKEN_FD))
		return -1;
	if (bpf_probe_read_user(&fd, sizeof(fd), uattr + fd_off))
		return -1;
	return fd;
}

/* The call's arguments, by ABI (a constant at each call site, so each
 * folds to one register read): x86-64 and x32 pass them in di, si, dx;
 * ia32 in bx, cx, dx, 32 bits each (bpf_attr has one layout for all).
 * Each is read only once needed: most calls leave after the command. */
static __always_inline __u32 arg_cmd(struct pt_regs *regs, __u32 abi)
{
	return abi == EV_COMPAT ? (__u32)BPF_CORE_READ(regs, bx) : (__u32)BPF_CORE_READ(regs, di);
}

static __always_inline const void *arg_attr(struct pt_regs *regs, __u32 abi)
{
	if (abi == EV_COMPAT)
		return (const void *)(unsigned long)(__u32)BPF_CORE_READ(regs, cx);
	return (const void *)BPF_CORE_READ(regs, si);
}

/* on_exit records one call, given its registers, its return value, and its
 * ABI as event flags (EV_COMPAT, EV_X32, or 0 for x86-64). */
static __always_inline int on_exit(struct pt_regs *regs, long ret, __u32 abi)
{
	__u32 cmd = arg_cmd(regs, abi);
	int creates = cmd == CMD_MAP_CREATE || cmd == CMD_PROG_LOAD || cmd == CMD_BTF_LOAD;

	/* The common case leaves here: a call that takes no token and was not
	 * refused. */
	if (!creates && ret != -EPERM)
		return 0;

	struct task_struct *t = bpf_get_current_task_btf();
	__u32 userns = BPF_CORE_READ(t, cred, user_ns, ns.inum);
	const void *uattr = arg_attr(regs, abi);
	int token_fd = creates ? token_fd_of(cmd, uattr) : -1;

	/* Record calls with a token, and refusals inside a user namespace
	 * other than the host's, and what a call made there: the attr, read
	 * again here, may no longer say that the call passed a token (another
	 * thread cleared the flag meanwhile). */
	if (token_fd < 0 && (userns == init_userns || (ret != -EPERM && !(creates && ret >= 0))))
		return 0;

	__u32 zero = 0;
	struct filter *flt = bpf_map_lookup_elem(&filters, &zero);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 cgid = bpf_get_current_cgroup_id();
	if (flt) {
		if (flt->userns && flt->userns != userns)
			return 0;
		if (flt->tgid && flt->tgid != (__u32)(pid_tgid >> 32))
			return 0;
		if (flt->cgroup_id && flt->cgroup_id != cgid)
			return 0;
	}

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u64 *n = bpf_map_lookup_elem(&dropped, &zero);
		if (n)
			*n += 1;
		return 0;
	}
	e->ktime = bpf_ktime_get_ns();
	e->cgroup_id = cgid;
	e->ret = ret;
	e->tgid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->userns = userns;
	e->cmd = cmd;
	e->token_fd = token_fd;
	e->token_userns = 0;
	e->token_dev = 0;
	e->flags = abi;
	e->obj_type = 0;
	e->obj_attach_type = 0;
	e->obj_id = 0;
	e->token_allowed[0] = e->token_allowed[1] = e->token_allowed[2] = e->token_allowed[3] = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	/* The attr's size as the caller gave it, bounded for the verifier
	 * (barrier_var keeps clang from folding the bound away). */
	__u64 n = (__u32)BPF_CORE_READ(regs, dx);
	barrier_var(n);
	if (n > ATTR_LEN)
		n = ATTR_LEN;
	__builtin_memset(e->attr, 0, ATTR_LEN);
	if (bpf_probe_read_user(e->attr, n, uattr))
		n = 0;
	e->attr_len = n;

	if (token_fd >= 0)
		read_token(t, token_fd, e);
	if (ret >= 0 && creates)
		read_object(t, (int)ret, e);
	/* A wakeup is an interrupt (in a VM, an exit to the hypervisor), which
	 * costs more than the rest of the record: wake the reader only when
	 * this record fills the ring past a quarter; else the reader polls. */
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 quarter = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4;
	__u64 wake = avail >= quarter && avail < quarter + RECORD_SIZE ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, wake);
	return 0;
}

/* syscalls:sys_exit_bpf, as the tracepoint's format file lays it out. */
struct sys_exit_ctx {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

SEC("tracepoint/syscalls/sys_exit_bpf")
int bpfgate_audit_tp(struct sys_exit_ctx *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	return on_exit(regs, ctx->ret, 0);
}

/* in_ia32 says whether the task is in a 32-bit call (int 0x80, sysenter,
 * syscall from 32-bit code), as in_ia32_syscall() does: TS_COMPAT. 357 is
 * no 64-bit system call, but the check is one load. */
static __always_inline int in_ia32(void)
{
	struct task_struct *t = bpf_get_current_task_btf();

	return BPF_CORE_READ(t, thread_info.status) & TS_COMPAT;
}

/* The raw sys_exit tracepoint: runs on every system call's exit, x86-64,
 * i386 and x32, and so records all three (an x32 call is bpf()'s 64-bit
 * number with X32_SYSCALL_BIT, its arguments in the 64-bit registers). A
 * second program on it next to the sys_exit_bpf tracepoint, for the other
 * ABIs only, costs other system calls both hooks' dispatch: +45 ns, where
 * this one alone costs +21 ns. */
SEC("tp_btf/sys_exit")
int BPF_PROG(bpfgate_audit_btf, struct pt_regs *regs, long ret)
{
	/* A direct load (regs is a BTF pointer here), not a helper call: every
	 * system call pays for this line. The low 32 bits only: the kernel
	 * takes the number as an int and ignores the upper half of rax, which
	 * orig_ax keeps (a 64-bit bpf() with bit 32 set is still bpf()). */
	__u32 nr = (__u32)regs->orig_ax;

	if (nr == NR_BPF)
		return on_exit(regs, ret, 0);
	if (nr == NR_BPF32 && in_ia32())
		return on_exit(regs, ret, EV_COMPAT);
	if (nr == (NR_BPF | X32_SYSCALL_BIT))
		return on_exit(regs, ret, EV_X32);
	return 0;
}
