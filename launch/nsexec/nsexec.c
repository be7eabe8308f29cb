//go:build cgo && linux

/*
 * The helpers of bpfgate that must run before the Go runtime starts: a Go
 * program is multi-threaded from its first instruction, and a
 * multi-threaded process can neither join a user namespace (setns) nor
 * fork without exec. bpfgate re-executes itself with BPFGATE_ENV_MODE set;
 * this constructor then takes over and never returns to Go.
 *
 * "sandbox" (bpfgate run): a supervisor on the host that clones the
 * sandbox, then stays outside it to forward signals and to remove the
 * workload's cgroup whatever happens to bpfgate. Inside, the first process
 * (pid 1) builds the filesystem view, receives the delegated bpffs, forks
 * the workload and stays as its init.
 *
 * "enter" (MountInto): joins a running process's user and mount namespace
 * through a pidfd and attaches a delegated bpffs there. It makes itself
 * non-dumpable first, so that the owner of that user namespace can signal
 * it but can neither ptrace it nor take its fds.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_bpf
#define SYS_bpf 321
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define NX_FSOPEN_CLOEXEC 1
#define NX_FSCONFIG_SET_STRING 1
#define NX_FSCONFIG_CMD_CREATE 6
#define NX_FSMOUNT_CLOEXEC 1
#define NX_MOUNT_ATTR_RDONLY 0x1
#define NX_MOUNT_ATTR_NOSUID 0x2
#define NX_MOUNT_ATTR_NODEV 0x4
#define NX_MOUNT_ATTR_NOEXEC 0x8
#define NX_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define NX_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define NX_OPEN_TREE_CLONE 1
#define NX_OPEN_TREE_CLOEXEC O_CLOEXEC
#define NX_AT_RECURSIVE 0x8000
#define NX_CLOSE_RANGE_CLOEXEC (1U << 2)
#define NX_BPF_TOKEN_CREATE 36

/* Where the sandbox's new root is built before pivot_root: the host's
 * directory is cloned first, so covering it hides nothing. */
#define NX_STAGE "/tmp"
#define NX_MAX_ENTRIES 256
#define NX_CLEANUP_MS 5000

/* Build with CGO_CFLAGS=-DNX_TIMING to see where a start spends its time
 * (bench/run.sh's breakdown). */
#ifdef NX_TIMING
#define NX_T(label)                                                                              \
	do {                                                                                     \
		struct timespec nx_ts;                                                           \
		clock_gettime(CLOCK_MONOTONIC, &nx_ts);                                          \
		fprintf(stderr, "nx %d %ld.%06ld %s\n", getpid(), (long)nx_ts.tv_sec, nx_ts.tv_nsec / 1000, label); \
	} while (0)
#else
#define NX_T(label) \
	do {        \
	} while (0)
#endif

static int nx_sock = -1;
static const char *nx_fault;

static void nx_send(const char *msg) {
	if (nx_sock >= 0)
		(void)send(nx_sock, msg, strlen(msg), MSG_NOSIGNAL);
}

static void nx_report(const char *fmt, ...) {
	char buf[4096] = BPFGATE_MSG_ERROR;
	size_t off = strlen(buf);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + off, sizeof(buf) - off, fmt, ap);
	va_end(ap);
	nx_send(buf);
}

/* nx_die reports an error to the host side and exits. */
#define nx_die(code, ...)              \
	do {                           \
		nx_report(__VA_ARGS__); \
		_exit(code);           \
	} while (0)

/* Fault injection, for the tests that kill a helper at each step (build tag
 * bpfgate_faults): other builds do not even read the variable. */
static void nx_fault_at(const char *step) {
#ifndef NX_FAULTS
	(void)step;
	return;
#endif
	if (!nx_fault || strcmp(nx_fault, step) != 0)
		return;
	/* A namespace's pid 1 cannot SIGKILL itself: die as if it had. */
	if (getpid() == 1)
		_exit(128 + SIGKILL);
	kill(getpid(), SIGKILL);
}

static int nx_write_file(const char *path, const char *data) {
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t len = strlen(data);
	ssize_t n = write(fd, data, len);
	int saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)len ? 0 : -1;
}

static int nx_last_cap(void) {
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	return last;
}

/* nx_recv_fd receives one message and at most one fd (-1 if none). */
static ssize_t nx_recv_fd(int sock, char *buf, size_t len, int *fd) {
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n;
	*fd = -1;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		int nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *fds = (int *)CMSG_DATA(cm);
		for (int i = 0; i < nfds; i++) {
			if (*fd < 0)
				*fd = fds[i];
			else
				close(fds[i]);
		}
	}
	return n;
}

static int nx_send_fd(int sock, const char *text, int fd) {
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/*
 * nx_delegate is the helper's half of the delegation handshake: create a
 * bpffs context in the current user namespace, hand it to the host side,
 * and receive the host's detached, verified mount of it. Returns the mount
 * fd, or exits after reporting.
 */
static int nx_delegate(void) {
	nx_fault_at("fsopen");
	int fsfd = syscall(SYS_fsopen, "bpf", NX_FSOPEN_CLOEXEC);
	if (fsfd < 0)
		nx_die(BPFGATE_EXIT_SETUP, "fsopen bpf: %s", strerror(errno));
	nx_fault_at("send");
	if (nx_send_fd(nx_sock, BPFGATE_MSG_CONTEXT, fsfd) < 0)
		_exit(BPFGATE_EXIT_SETUP);
	close(fsfd);
	char reply[4096];
	int mfd;
	ssize_t n = nx_recv_fd(nx_sock, reply, sizeof(reply) - 1, &mfd);
	if (n != (ssize_t)strlen(BPFGATE_MSG_READY) || memcmp(reply, BPFGATE_MSG_READY, n) != 0 || mfd < 0)
		_exit(BPFGATE_EXIT_SETUP); /* the host side has the error */
	return mfd;
}

/* ---- sandbox: the workload ---- */

static const int nx_forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM, SIGPIPE};

static void nx_forward_set(sigset_t *set) {
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(nx_forwarded) / sizeof(nx_forwarded[0]); i++)
		sigaddset(set, nx_forwarded[i]);
}

#if defined(__x86_64__)
#define NX_AUDIT_ARCH AUDIT_ARCH_X86_64
#define NX_X32_BIT 0x40000000
#elif defined(__aarch64__)
#define NX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#define NX_X32_BIT 0
#endif

/*
 * nx_seccomp keeps the workload's BPF objects inside the sandbox. The
 * kernel checks the token when an object is made, not when another process
 * uses it: a program fd passed out over a unix socket lets any local user
 * attach it, an XDP program to a host interface say. Files are shared with
 * the host, so a unix socket in /tmp reaches out; the workload may therefore
 * make no unix socket but a connected socketpair(), and no io_uring, which
 * makes sockets past seccomp. Everything else is allowed.
 */
static int nx_seccomp(void) {
#ifdef NX_AUDIT_ARCH
	struct sock_filter f[] = {
		/* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NX_AUDIT_ARCH, 1, 0),
		/* 2 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		/* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		/* x32 calls (nr | NX_X32_BIT) would dodge the numbers below */
		/* 4 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, NX_X32_BIT ? NX_X32_BIT : 0xffffffff, 0, 1),
		/* 5 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		/* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 5, 0),
		/* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_enter, 4, 0),
		/* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_register, 3, 0),
		/* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 3, 0),
		/* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 6, 0),
		/* 11 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* 12 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		/* socket(): anything but AF_UNIX */
		/* 13 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		/* 14 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
		/* 15 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		/* 16 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* socketpair(): connected stream and seqpacket pairs only; the end
		 * of a datagram pair can still sendto() any socket by its path */
		/* 17 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		/* 18 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf),
		/* 19 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOCK_STREAM, 2, 0),
		/* 20 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOCK_SEQPACKET, 1, 0),
		/* 21 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		/* 22 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* The bpf(2) commands the recorder sees: those that make objects under a
 * token or that a delegation otherwise bears on (bpfgate's record package
 * decodes them). Every other call, bpf() or not, passes the filter at the
 * cost of a few cBPF instructions. */
static const unsigned int nx_recorded_cmds[] = {
	0,  /* BPF_MAP_CREATE */
	5,  /* BPF_PROG_LOAD */
	8,  /* BPF_PROG_ATTACH */
	17, /* BPF_RAW_TRACEPOINT_OPEN */
	18, /* BPF_BTF_LOAD */
	28, /* BPF_LINK_CREATE */
	36, /* BPF_TOKEN_CREATE */
};

/*
 * nx_record installs a second filter that turns the recorded bpf() commands
 * into user notifications, and hands the listener to the host side. The
 * workload must never hold the listener: it could answer its own calls.
 * Calls of another architecture get EPERM (as the sandbox's own filter
 * gives them), since they would escape the record.
 */
static void nx_record(void) {
#ifdef NX_AUDIT_ARCH
	enum { NCMDS = sizeof(nx_recorded_cmds) / sizeof(nx_recorded_cmds[0]) };
	struct sock_filter f[11 + NCMDS];
	unsigned int n = 0;
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NX_AUDIT_ARCH, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, NX_X32_BIT ? NX_X32_BIT : 0xffffffff, 0, 1);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_bpf, 1, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	/* The command is an int: the low half of args[0] (little endian). */
	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
	for (unsigned int i = 0; i < NCMDS; i++)
		f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nx_recorded_cmds[i], NCMDS - i, 0);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
	struct sock_fprog prog = {.len = n, .filter = f};
	/* No no_new_privs here: root of the user namespace may install filters,
	 * and --allow-unix-sockets keeps setuid semantics as `run` has them. */
	int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (fd < 0)
		nx_die(BPFGATE_EXIT_SETUP, "seccomp listener for the bpf() record: %s", strerror(errno));
	nx_fault_at("listener");
	if (nx_send_fd(nx_sock, BPFGATE_MSG_LISTENER, fd) < 0)
		_exit(BPFGATE_EXIT_SETUP); /* the host side is gone or has the error */
	close(fd);
	nx_fault_at("listener-sent");
#else
	nx_die(BPFGATE_EXIT_SETUP, "recording bpf() calls is not supported on this architecture");
#endif
}

static void nx_exec_workload(char **argv, int nfds, unsigned long long keep, int allow_unix, int record) {
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Only 0, 1, 2 and the fds the caller asked to preserve survive the
	 * exec; the handshake socket is close-on-exec already. */
	if (syscall(SYS_close_range, 3 + nfds, ~0U, NX_CLOSE_RANGE_CLOEXEC) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "close_range: %s", strerror(errno));
	int last = nx_last_cap();
	for (int c = 0; c <= last; c++) {
		if (c < 64 && (keep >> c) & 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
			nx_die(BPFGATE_EXIT_SETUP, "drop capability %d from the bounding set: %s", c, strerror(errno));
	}
	if (!allow_unix && nx_seccomp() < 0)
		nx_die(BPFGATE_EXIT_SETUP, "seccomp filter: %s", strerror(errno));
	nx_fault_at("exec");
	const char *cmd = argv[0];
	char cand[4096];
	if (!strchr(cmd, '/')) {
		/* Search PATH as execvp does: an entry that is not an executable
		 * regular file (a directory, a file without x) does not hide a
		 * command found later; if nothing is found, the first such entry
		 * is what the error names. */
		const char *path = getenv("PATH");
		static char seen[4096];
		int found = 0;
		seen[0] = 0;
		for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin";;) {
			const char *colon = strchr(p, ':');
			size_t len = colon ? (size_t)(colon - p) : strlen(p);
			struct stat st;
			if (len > 0 && snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, p, cmd) < (int)sizeof(cand) &&
			    stat(cand, &st) == 0) {
				if (S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
					found = 1;
					cmd = cand;
					break;
				}
				if (!seen[0])
					snprintf(seen, sizeof(seen), "%s", cand);
			}
			if (!colon)
				break;
			p = colon + 1;
		}
		if (!found && seen[0])
			cmd = seen; /* execv reports why it cannot run */
		else if (!found)
			nx_die(BPFGATE_EXIT_NOTFOUND, "command \"%s\" not found in the workload's PATH", argv[0]);
	}
	if (record)
		nx_record();
	NX_T("workload: exec");
	nx_send(BPFGATE_MSG_EXEC);
	execv(cmd, argv);
	int err = errno;
	nx_report("exec %s: %s%s", cmd, strerror(err),
		  err == EACCES ? " (the workload runs as an unprivileged host uid: the program and every directory above it must be readable and searchable by others, e.g. install it under /usr/local/bin)" : "");
	_exit(err == ENOENT || err == ENOTDIR ? BPFGATE_EXIT_NOTFOUND : BPFGATE_EXIT_NOEXEC);
}

/* nx_graft clones the mount tree at src (with everything below it) and
 * attaches the copy at name below dirfd, recreating symlinks as symlinks. */
static int nx_graft(int dirfd, const char *src, const char *name, int treefd) {
	struct stat st;
	if (fstatat(AT_FDCWD, src, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	if (S_ISLNK(st.st_mode)) {
		char link[4096];
		ssize_t n = readlink(src, link, sizeof(link) - 1);
		if (n < 0)
			return -1;
		link[n] = 0;
		return symlinkat(link, dirfd, name);
	}
	if (treefd < 0)
		return 0; /* not cloned: sockets, fifos and the like */
	if (S_ISDIR(st.st_mode)) {
		if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
			return -1;
	} else {
		int fd = openat(dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0)
			return -1;
		close(fd);
	}
	return syscall(SYS_move_mount, treefd, "", dirfd, name, NX_MOVE_MOUNT_F_EMPTY_PATH);
}

struct nx_entry {
	char name[256];
	int tree;
};

/* nx_rebuild gives stage (a fresh tmpfs that covers the host's stage
 * directory) a copy of every entry of host directory dir but those in skip.
 * The copies are cloned before the cover goes on. */
static void nx_rebuild(const char *dir, const char *stage, const char *const *skip) {
	struct nx_entry *ents = calloc(NX_MAX_ENTRIES, sizeof(*ents));
	int n = 0;
	DIR *d = opendir(dir);
	if (!ents || !d)
		nx_die(BPFGATE_EXIT_SETUP, "read %s: %s", dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)) && n < NX_MAX_ENTRIES) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int skipped = 0;
		for (const char *const *s = skip; *s; s++)
			if (strcmp(*s, de->d_name) == 0)
				skipped = 1;
		if (skipped)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, de->d_name);
		snprintf(ents[n].name, sizeof(ents[n].name), "%s", de->d_name);
		ents[n].tree = -1;
		unsigned char type = de->d_type;
		if (type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
				type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
		}
		if (type == DT_DIR || type == DT_REG) {
			ents[n].tree = syscall(SYS_open_tree, AT_FDCWD, path, NX_OPEN_TREE_CLONE | NX_OPEN_TREE_CLOEXEC | NX_AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
			if (ents[n].tree < 0)
				nx_die(BPFGATE_EXIT_SETUP, "clone mount tree %s: %s", path, strerror(errno));
		}
		n++;
	}
	closedir(d);
	if (mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
		nx_die(BPFGATE_EXIT_SETUP, "mount tmpfs on %s: %s", stage, strerror(errno));
	int stagefd = open(stage, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (stagefd < 0)
		nx_die(BPFGATE_EXIT_SETUP, "open %s: %s", stage, strerror(errno));
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, ents[i].name);
		if (nx_graft(stagefd, path, ents[i].name, ents[i].tree) < 0)
			nx_die(BPFGATE_EXIT_SETUP, "graft %s: %s", path, strerror(errno));
		if (ents[i].tree >= 0)
			close(ents[i].tree);
	}
	close(stagefd);
	free(ents);
}

static void nx_mkdir(const char *path) {
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		nx_die(BPFGATE_EXIT_SETUP, "mkdir %s: %s", path, strerror(errno));
}

static void nx_mount(const char *src, const char *target, const char *type, unsigned long flags, const char *data) {
	if (mount(src, target, type, flags, data) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "mount %s on %s: %s", type, target, strerror(errno));
}

/* nx_unescape decodes mountinfo's octal escapes (\040 for a space) in place. */
static void nx_unescape(char *p) {
	char *w = p;
	for (; *p; p++, w++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
			*w = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*w = *p;
		}
	}
	*w = 0;
}

/* nx_walk opens path (absolute) one component at a time, never following
 * a symlink, so that neither PATH_MAX nor a symlink put in its way matters.
 * Returns an O_PATH fd, or -1 with errno set. */
static int nx_walk(const char *path) {
	int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char name[NAME_MAX + 1];
		if (n > NAME_MAX) {
			close(fd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(name, p, n);
		name[n] = 0;
		int next = openat(fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		int err = errno;
		close(fd);
		if (next < 0) {
			errno = err;
			return -1;
		}
		fd = next;
		p += n;
	}
	return fd;
}

/* nx_cover puts an empty read-only tmpfs over the directory at fd, or
 * /dev/null over the file, with the new mount API: no path involved. */
static int nx_cover(int fd) {
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	int mfd;
	if (S_ISDIR(st.st_mode)) {
		int fs = syscall(SYS_fsopen, "tmpfs", NX_FSOPEN_CLOEXEC);
		if (fs < 0)
			return -1;
		if (syscall(SYS_fsconfig, fs, NX_FSCONFIG_SET_STRING, "size", "4k", 0) < 0 ||
		    syscall(SYS_fsconfig, fs, NX_FSCONFIG_SET_STRING, "mode", "0555", 0) < 0 ||
		    syscall(SYS_fsconfig, fs, NX_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
			close(fs);
			return -1;
		}
		mfd = syscall(SYS_fsmount, fs, NX_FSMOUNT_CLOEXEC, NX_MOUNT_ATTR_RDONLY | NX_MOUNT_ATTR_NOSUID | NX_MOUNT_ATTR_NODEV | NX_MOUNT_ATTR_NOEXEC);
		close(fs);
	} else {
		mfd = syscall(SYS_open_tree, AT_FDCWD, "/dev/null", NX_OPEN_TREE_CLONE | NX_OPEN_TREE_CLOEXEC);
	}
	if (mfd < 0)
		return -1;
	int r = syscall(SYS_move_mount, mfd, "", fd, "", NX_MOVE_MOUNT_F_EMPTY_PATH | NX_MOVE_MOUNT_T_EMPTY_PATH);
	int err = errno;
	close(mfd);
	errno = err;
	return r;
}

/*
 * nx_cover_host_mounts hides what the host has mounted below the directories
 * the sandbox's new root shows and a workload could use to reach past its
 * namespaces: other BPF filesystems (pins there outlive the sandbox and can
 * be opened from outside), cgroup hierarchies (cgroup programs attach to any
 * cgroup directory one can open), namespace files (sk_lookup and
 * flow_dissector links attach to any network namespace one can open), and
 * other procfs and sysfs views. The host's mounts are locked in the
 * sandbox's mount namespace, so they are covered.
 *
 * It runs in a helper of the supervisor that joined the sandbox's mount
 * namespace as host root: permissions hide nothing from it (a mount below a
 * directory the workload cannot search today may become searchable
 * tomorrow). Lines and paths may be of any length; a mount point that moves
 * while this runs fails the start rather than go uncovered. The workload
 * has no CAP_SYS_ADMIN, so it cannot take a cover off.
 */
struct nx_mnt {
	int id, parent;
	char *point; /* unescaped */
	int covered_type;
};

static int nx_cover_pass(int last);

/* A user who owns a directory above a host mount can move it while the
 * covers are made: a pass that met a moved mount is done again (each pass
 * reads the mount table anew), and only a mount that keeps moving fails
 * the start. */
static int nx_cover_host_mounts(void) {
	for (int pass = 0; pass < 100; pass++) {
		int r = nx_cover_pass(pass == 99);
		if (r <= 0)
			return r;
		usleep(1000);
	}
	return -1;
}

/* nx_cover_pass returns 0 when every mount is covered, 1 when one moved
 * (and last is not set), -1 on an error it has reported. */
static int nx_cover_pass(int last) {
	static const char *const covered[] = {"bpf", "cgroup", "cgroup2", "nsfs", "proc", "sysfs", NULL};
	static const char *const own[] = {NX_STAGE "/proc", NX_STAGE "/sys", NULL};
	/* The new root is the tmpfs on NX_STAGE: what is mounted below it is
	 * what the workload will see. Mounts of the host's own NX_STAGE lie
	 * under the same path but below that tmpfs, out of reach: mount ids
	 * and parents tell them apart, paths cannot. */
	struct statx stx;
	if (statx(AT_FDCWD, NX_STAGE, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) < 0) {
		nx_report("statx %s: %s", NX_STAGE, strerror(errno));
		return -1;
	}
	int stage_id = (int)stx.stx_mnt_id;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		nx_report("read mountinfo: %s", strerror(errno));
		return -1;
	}
	struct nx_mnt *m = NULL;
	size_t n = 0;
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;
	while (getline(&line, &cap, f) > 0) {
		int id, parent;
		char point[1];
		(void)point;
		if (sscanf(line, "%d %d", &id, &parent) != 2)
			continue;
		char *sep = strstr(line, " - ");
		char type[64] = "";
		if (sep)
			sscanf(sep + 3, "%63s", type);
		char *p = line;
		for (int i = 0; i < 4 && p; i++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		char *end = strchr(p, ' ');
		if (end)
			*end = 0;
		nx_unescape(p);
		struct nx_mnt *grown = realloc(m, (n + 1) * sizeof(*m));
		if (!grown) {
			ret = -1;
			break;
		}
		m = grown;
		m[n].id = id;
		m[n].parent = parent;
		m[n].point = strdup(p);
		m[n].covered_type = 0;
		for (const char *const *c = covered; *c; c++)
			m[n].covered_type |= strcmp(type, *c) == 0;
		n++;
	}
	free(line);
	fclose(f);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		if (!m[i].covered_type)
			continue;
		/* In the new root: its chain of parents reaches the stage. */
		int inside = 0, cur = m[i].parent;
		for (size_t hops = 0; hops < n && cur && !inside; hops++) {
			if (cur == stage_id) {
				inside = 1;
				break;
			}
			int next = 0;
			for (size_t j = 0; j < n; j++)
				if (m[j].id == cur && m[j].parent != cur)
					next = m[j].parent;
			cur = next;
		}
		if (!inside)
			continue;
		int mine = 0;
		for (const char *const *o = own; *o; o++) {
			size_t len = strlen(*o);
			mine |= strncmp(m[i].point, *o, len) == 0 && (m[i].point[len] == 0 || m[i].point[len] == '/');
		}
		if (mine)
			continue;
		/* Out of reach: a mount below which another one, later on the
		 * same parent, sits on a directory on its way (the host mounted
		 * something over a directory that already held mounts). */
		int shadowed = 0;
		const char *below_point = m[i].point;
		for (int a = m[i].parent; a && a != stage_id && !shadowed;) {
			size_t bl = strlen(below_point);
			for (size_t j = 0; j < n && !shadowed; j++) {
				size_t xl = strlen(m[j].point);
				shadowed = m[j].parent == a && xl < bl && strncmp(m[j].point, below_point, xl) == 0 &&
					   (below_point[xl] == '/' || (xl == 1 && m[j].point[0] == '/'));
			}
			int next = 0;
			for (size_t j = 0; j < n; j++)
				if (m[j].id == a) {
					below_point = m[j].point;
					next = m[j].parent == a ? 0 : m[j].parent;
				}
			a = next;
		}
		if (shadowed)
			continue;
		int fd = nx_walk(m[i].point);
		struct statx at;
		int err = 0;
		if (fd < 0)
			err = errno;
		else if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &at) < 0)
			err = errno;
		else if ((int)at.stx_mnt_id != m[i].id) {
			/* Something is on top (a cover of an earlier pass, say),
			 * which hides this one; or the path led elsewhere. */
			int stacked = 0;
			for (size_t j = 0; j < n; j++)
				stacked |= m[j].id == (int)at.stx_mnt_id && m[j].parent == m[i].id && strcmp(m[j].point, m[i].point) == 0;
			if (stacked) {
				close(fd);
				continue;
			}
			err = EXDEV;
		}
		if (!err && nx_cover(fd) < 0)
			err = errno;
		if (fd >= 0)
			close(fd);
		if (err == ENOENT || err == ENOTDIR || err == ELOOP || err == EXDEV) {
			if (!last) {
				ret = 1; /* it moved: the next pass reads the table anew */
				break;
			}
		}
		if (err) {
			nx_report("cover the host's mount %d at %s (it kept moving while the sandbox was built): %s",
				  m[i].id, m[i].point + strlen(NX_STAGE), strerror(err));
			ret = -1;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(m[i].point);
	free(m);
	return ret;
}

/* The sandbox's init asks its supervisor to cover the host's mounts (see
 * nx_cover_host_mounts) and waits for the answer. */
static int nx_ask_wr = -1, nx_reply_rd = -1;

static void nx_ask_covers(void) {
	char b = 'c';
	if (write(nx_ask_wr, &b, 1) != 1)
		_exit(BPFGATE_EXIT_SETUP);
	ssize_t r;
	do
		r = read(nx_reply_rd, &b, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1 || b != 'k')
		_exit(BPFGATE_EXIT_SETUP); /* the supervisor has reported why */
	close(nx_ask_wr);
	close(nx_reply_rd);
	nx_ask_wr = nx_reply_rd = -1;
}

/*
 * nx_build_root gives the sandbox its view of the filesystem: the host's
 * directories, but a /proc of its own PID namespace, a /sys of its own
 * network namespace (or, sharing the host's network, the host's /sys
 * without /sys/fs) and at /sys/fs/cgroup only its own cgroup. The host's
 * /proc and /sys are not in the new tree at all; what else would reach past
 * the sandbox is covered (nx_cover_host_mounts).
 */
static void nx_build_root(int own_net) {
	static const char *const skip_root[] = {"proc", "sys", NULL};
	static const char *const skip_sys[] = {"fs", NULL};
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "/");

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "make mounts private: %s", strerror(errno));
	nx_rebuild("/", NX_STAGE, skip_root);
	nx_mkdir(NX_STAGE "/proc");
	nx_mount("proc", NX_STAGE "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	nx_mkdir(NX_STAGE "/sys");
	if (own_net) {
		nx_mount("sysfs", NX_STAGE "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
	} else {
		/* A sysfs mount needs a network namespace of one's own. */
		nx_rebuild("/sys", NX_STAGE "/sys", skip_sys);
		nx_mkdir(NX_STAGE "/sys/fs");
		nx_mkdir(NX_STAGE "/sys/fs/cgroup");
		nx_mkdir(NX_STAGE "/sys/fs/bpf");
	}
	nx_mount("cgroup2", NX_STAGE "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	nx_ask_covers();

	if (chdir(NX_STAGE) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "chdir %s: %s", NX_STAGE, strerror(errno));
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		nx_die(BPFGATE_EXIT_SETUP, "pivot_root: %s", strerror(errno));
	if (umount2(".", MNT_DETACH) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "detach the old root: %s", strerror(errno));
	if (chdir(cwd) < 0 && chdir("/") < 0)
		nx_die(BPFGATE_EXIT_SETUP, "chdir /: %s", strerror(errno));
}

static void nx_lo_up(void) {
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		nx_die(BPFGATE_EXIT_SETUP, "socket: %s", strerror(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "lo: %s", strerror(errno));
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "bring lo up: %s", strerror(errno));
	close(s);
}

/* nx_init is pid 1 of the sandbox. */
static void nx_init(char **argv, int nfds, int sync_rd, int ask_wr, int own_net, const char *target, unsigned long long keep, int allow_unix, int record) {
	char b;
	ssize_t r;
	do
		r = read(sync_rd, &b, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		_exit(BPFGATE_EXIT_SETUP); /* the supervisor went away */
	/* Become root of the new user namespace (the host range's first id). */
	NX_T("init: maps written");
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "become root of the user namespace: %s", strerror(errno));
	/* The credential change cleared these: set them again, then make sure
	 * the supervisor did not die before the death signal was armed. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	struct pollfd pfd = {.fd = sync_rd, .events = POLLIN};
	if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLIN)))
		_exit(BPFGATE_EXIT_SETUP);
	nx_reply_rd = sync_rd;
	nx_ask_wr = ask_wr;

	if (unshare(CLONE_NEWCGROUP) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "cgroup namespace: %s", strerror(errno));
	NX_T("init: build root");
	nx_build_root(own_net);
	NX_T("init: root built");
	if (own_net)
		nx_lo_up();

	int mfd = nx_delegate();
	NX_T("init: bpffs received");
	nx_fault_at("attach");
	if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, NX_MOVE_MOUNT_F_EMPTY_PATH) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "mount bpffs on %s: %s", target, strerror(errno));
	close(mfd);
	nx_fault_at("confirm");
	nx_send(BPFGATE_MSG_MOUNTED);

	sigset_t fwd, all;
	nx_forward_set(&fwd);
	all = fwd;
	sigaddset(&all, SIGCHLD);
	sigprocmask(SIG_BLOCK, &all, NULL);
	pid_t child = fork();
	if (child < 0)
		nx_die(BPFGATE_EXIT_SETUP, "fork: %s", strerror(errno));
	if (child == 0)
		nx_exec_workload(argv, nfds, keep, allow_unix, record);
	NX_T("init: forked");
	close(nx_sock);
	nx_sock = -1;
	for (int i = 3; i < 3 + nfds; i++)
		close(i);

	/* Forward signals to the workload, reap every orphan, and leave with
	 * the workload's status: 128+N for signal N, as shells report it. */
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			/* A terminal's signals (SI_KERNEL) reach the workload by
			 * themselves: it is in the foreground process group too. */
			if (si.si_code != SI_KERNEL)
				kill(child, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t p = waitpid(-1, &status, WNOHANG);
			if (p <= 0)
				break;
			if (p != child)
				continue;
			NX_T("init: workload exited");
			if (WIFSIGNALED(status))
				_exit(128 + WTERMSIG(status));
			_exit(WEXITSTATUS(status));
		}
	}
}

/* ---- sandbox: the supervisor ---- */

static long long nx_now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* nx_cgroup_empty reads cgroup.events: 1 when no process is left. */
static int nx_cgroup_empty(int cgfd, int *eventsfd) {
	if (*eventsfd < 0)
		*eventsfd = openat(cgfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
	if (*eventsfd < 0)
		return errno == ENOENT ? 1 : 0;
	char buf[256];
	ssize_t n = pread(*eventsfd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, "populated 0") != NULL;
}

/* nx_cgroup_remove kills what is left in the workload's cgroup and
 * removes it. */
static int nx_cgroup_remove(int cgfd, int parentfd, const char *name) {
	int fd = openat(cgfd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)write(fd, "1", 1);
		close(fd);
	}
	int eventsfd = -1;
	long long deadline = nx_now_ms() + NX_CLEANUP_MS;
	while (!nx_cgroup_empty(cgfd, &eventsfd)) {
		long long left = deadline - nx_now_ms();
		if (left <= 0)
			break;
		struct pollfd pfd = {.fd = eventsfd, .events = POLLPRI};
		poll(&pfd, 1, left < 50 ? (int)left : 50);
	}
	if (eventsfd >= 0)
		close(eventsfd);
	long long until = nx_now_ms() + NX_CLEANUP_MS;
	for (;;) {
		if (unlinkat(parentfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY || nx_now_ms() > until)
			return -1;
		usleep(1000);
	}
}

/* nx_serve_covers waits for the sandbox to ask for its covers (or to end),
 * and makes them from a helper that joins its mount namespace as host root. */
static int nx_serve_covers(int askfd, int pidfd) {
	struct pollfd pfds[2] = {{.fd = askfd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
	for (;;) {
		int n = poll(pfds, 2, NX_CLEANUP_MS * 2);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			nx_report("the sandbox did not get its root ready in time");
			return -1;
		}
		break;
	}
	char b;
	if (!(pfds[0].revents & POLLIN) || read(askfd, &b, 1) != 1)
		return -1; /* it ended: its exit status tells */
	pid_t helper = fork();
	if (helper < 0) {
		nx_report("fork: %s", strerror(errno));
		return -1;
	}
	if (helper == 0) {
		if (setns(pidfd, CLONE_NEWNS) < 0) {
			nx_report("join the sandbox's mount namespace: %s", strerror(errno));
			_exit(BPFGATE_EXIT_SETUP);
		}
		_exit(nx_cover_host_mounts() < 0 ? BPFGATE_EXIT_SETUP : 0);
	}
	int status;
	while (waitpid(helper, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void nx_supervise(char **argv) {
	const char *nfds_s = getenv(BPFGATE_ENV_NFDS);
	const char *uidmap = getenv(BPFGATE_ENV_UIDMAP);
	const char *gidmap = getenv(BPFGATE_ENV_GIDMAP);
	const char *net = getenv(BPFGATE_ENV_NET);
	const char *target = getenv(BPFGATE_ENV_TARGET);
	const char *caps = getenv(BPFGATE_ENV_CAPS);
	const char *cgname = getenv(BPFGATE_ENV_CGNAME);
	int nfds = nfds_s ? atoi(nfds_s) : -1;
	if (nfds < 0 || nfds > 1000) {
		fprintf(stderr, "bpfgate: bad %s\n", BPFGATE_ENV_NFDS);
		_exit(BPFGATE_EXIT_SETUP);
	}
	int base = 3 + nfds;
	/* bpfgate's own caller may have left fds open without close-on-exec:
	 * none of them is for the supervisor, let alone the sandbox. */
	syscall(SYS_close_range, base + BPFGATE_SANDBOX_NCTL, ~0U, 0);
	nx_sock = base + BPFGATE_SANDBOX_SOCK;
	int lifefd = base + BPFGATE_SANDBOX_LIFE;
	int cgparent = base + BPFGATE_SANDBOX_CGPARENT;
	for (int i = base; i < base + BPFGATE_SANDBOX_NCTL; i++)
		fcntl(i, F_SETFD, FD_CLOEXEC);
	if (!uidmap || !gidmap || !net || !target || !caps || !cgname || !argv[1])
		nx_die(BPFGATE_EXIT_SETUP, "bad sandbox environment");
	char *end;
	unsigned long long keep = strtoull(caps, &end, 16);
	if (*end)
		nx_die(BPFGATE_EXIT_SETUP, "bad capability mask \"%s\"", caps);
	int own_net = strcmp(net, "host") != 0;
	const char *unix_s = getenv(BPFGATE_ENV_UNIX);
	int allow_unix = unix_s && strcmp(unix_s, "allow") == 0;
	const char *record_s = getenv(BPFGATE_ENV_RECORD);
	int record = record_s && strcmp(record_s, BPFGATE_RECORD_BPF) == 0;
	NX_T("supervisor: start");

	/* Nothing of this must reach the workload. */
	char map_u[4096], map_g[4096], tgt[4096], name[256];
	snprintf(map_u, sizeof(map_u), "%s", uidmap);
	snprintf(map_g, sizeof(map_g), "%s", gidmap);
	snprintf(tgt, sizeof(tgt), "%s", target);
	snprintf(name, sizeof(name), "%s", cgname);
	const char *vars[] = {BPFGATE_ENV_MODE, BPFGATE_ENV_NFDS, BPFGATE_ENV_UIDMAP, BPFGATE_ENV_GIDMAP, BPFGATE_ENV_NET,
			      BPFGATE_ENV_TARGET, BPFGATE_ENV_CAPS, BPFGATE_ENV_CGNAME, BPFGATE_ENV_UNIX, BPFGATE_ENV_RECORD, BPFGATE_ENV_FAULT};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);

	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Host root's supplementary groups would follow the workload into its
	 * user namespace, where setgroups is denied: drop them now. */
	if (setgroups(0, NULL) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "drop supplementary groups: %s", strerror(errno));
	sigset_t fwd;
	nx_forward_set(&fwd);
	sigprocmask(SIG_BLOCK, &fwd, NULL);
	int sigfd = signalfd(-1, &fwd, SFD_CLOEXEC);
	int sync[2], ask[2];
	if (sigfd < 0 || pipe2(sync, O_CLOEXEC) < 0 || pipe2(ask, O_CLOEXEC) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "supervisor setup: %s", strerror(errno));

	/* The supervisor makes the workload's cgroup itself, so that from its
	 * first moment someone is there to remove it: bpfgate may be killed at
	 * any point. */
	if (mkdirat(cgparent, name, 0755) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "create the workload's cgroup %s: %s", name, strerror(errno));
	int cgfd = openat(cgparent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cgfd < 0) {
		int err = errno;
		unlinkat(cgparent, name, AT_REMOVEDIR);
		nx_die(BPFGATE_EXIT_SETUP, "open the workload's cgroup %s: %s", name, strerror(err));
	}

	uint64_t flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_PIDFD | CLONE_INTO_CGROUP;
	if (own_net)
		flags |= CLONE_NEWNET;
	int pidfd = -1;
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = flags;
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = SIGCHLD;
	ca.cgroup = (uint64_t)cgfd;
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	NX_T(pid == 0 ? "init: cloned" : "supervisor: cloned");
	if (pid < 0) {
		int err = errno;
		unlinkat(cgparent, name, AT_REMOVEDIR);
		nx_die(BPFGATE_EXIT_SETUP, "clone the sandbox: %s", strerror(err));
	}
	if (pid == 0) {
		close(sync[1]);
		close(ask[0]);
		close(sigfd);
		close(lifefd);
		close(cgfd);
		close(cgparent);
		close(base + BPFGATE_SANDBOX_LEASE);
		sigprocmask(SIG_UNBLOCK, &fwd, NULL);
		nx_init(argv + 1, nfds, sync[0], ask[1], own_net, tgt, keep, allow_unix, record);
		_exit(BPFGATE_EXIT_SETUP);
	}
	close(sync[0]);
	close(ask[1]);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/setgroups", pid);
	int err = nx_write_file(path, "deny");
	snprintf(path, sizeof(path), "/proc/%ld/uid_map", pid);
	if (!err && (err = nx_write_file(path, map_u)) < 0)
		nx_report("write uid map \"%s\": %s", map_u, strerror(errno));
	snprintf(path, sizeof(path), "/proc/%ld/gid_map", pid);
	if (!err && (err = nx_write_file(path, map_g)) < 0)
		nx_report("write gid map \"%s\": %s", map_g, strerror(errno));
	if (err)
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	else
		(void)write(sync[1], "1", 1);
	if (!err && nx_serve_covers(ask[0], pidfd) < 0)
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	else if (!err)
		(void)write(sync[1], "k", 1);
	close(ask[0]);
	/* The sandbox holds the handshake socket now; the host side sees EOF
	 * when the workload executes (or when everything died). */
	close(nx_sock);
	nx_sock = -1;
	for (int i = 3; i < base; i++)
		close(i);

	int code = BPFGATE_EXIT_SETUP;
	for (;;) {
		struct pollfd pfds[3] = {{.fd = pidfd, .events = POLLIN}, {.fd = lifefd, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}};
		if (poll(pfds, lifefd >= 0 ? 3 : 1, -1) < 0)
			continue;
		if (pfds[0].revents) {
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			if (waitid(P_PIDFD, pidfd, &si, WEXITED) < 0)
				continue;
			code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
			NX_T("supervisor: sandbox ended");
			break;
		}
		if (lifefd >= 0 && pfds[1].revents) {
			/* bpfgate is gone: the sandbox goes with it. */
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			close(lifefd);
			lifefd = -1;
		}
		if (pfds[2].revents) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_code != SI_KERNEL)
				syscall(SYS_pidfd_send_signal, pidfd, si.ssi_signo, NULL, 0);
		}
	}
	if (nx_cgroup_remove(cgfd, cgparent, name) < 0)
		fprintf(stderr, "bpfgate: remove the workload's cgroup %s: %s\n", name, strerror(errno));
	NX_T("supervisor: cgroup removed");
	_exit(code);
}

/* ---- enter: MountInto's helper ---- */

static void nx_enter(void) {
	/* First: the owner of the target user namespace may signal this
	 * process once it joins, but must not ptrace it or take its fds. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	nx_sock = BPFGATE_ENTER_SOCK;
	int pidfd = BPFGATE_ENTER_PIDFD;
	int dirfd = BPFGATE_ENTER_DIR;
	pid_t parent = getppid();
	/* Hold nothing but what the mount takes. */
	if (syscall(SYS_close_range, BPFGATE_ENTER_DIR + 1, ~0U, 0) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "close_range: %s", strerror(errno));
	for (int fd = BPFGATE_ENTER_SOCK; fd <= BPFGATE_ENTER_DIR; fd++)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	nx_fault = getenv(BPFGATE_ENV_FAULT);

	if (setgroups(0, NULL) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "drop supplementary groups: %s", strerror(errno));
	if (setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "join the process's user and mount namespaces: %s", strerror(errno));
	close(pidfd);
	/* Root of that namespace, when it has one, owns the new filesystem by
	 * default; otherwise the profile's uid and gid say who does. */
	if (setresgid(0, 0, 0) == 0)
		(void)setresuid(0, 0, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != parent)
		_exit(BPFGATE_EXIT_SETUP);

	/* The host checked the filesystem, its type and its owner. */
	int mfd = nx_delegate();
	nx_fault_at("attach");
	if (syscall(SYS_move_mount, mfd, "", dirfd, "", NX_MOVE_MOUNT_F_EMPTY_PATH | NX_MOVE_MOUNT_T_EMPTY_PATH) < 0)
		nx_die(BPFGATE_EXIT_SETUP, "mount bpffs: %s", strerror(errno));
	nx_fault_at("confirm");
	nx_send(BPFGATE_MSG_MOUNTED);
	_exit(0);
}

/* ---- verify: who owns a bpffs ---- */

/* nx_verify joins a user namespace and asks the kernel whether a bpffs
 * belongs to it: BPF_TOKEN_CREATE fails with EPERM exactly when the
 * filesystem's owner is another namespace. */
static void nx_verify(void) {
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (syscall(SYS_close_range, BPFGATE_VERIFY_MOUNT + 1, ~0U, 0) < 0)
		_exit(BPFGATE_EXIT_SETUP);
	if (setgroups(0, NULL) < 0 || setns(BPFGATE_VERIFY_USERNS, CLONE_NEWUSER) < 0)
		_exit(BPFGATE_EXIT_SETUP);
	int rootfd = openat(BPFGATE_VERIFY_MOUNT, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		_exit(BPFGATE_EXIT_SETUP);
	union {
		struct {
			uint32_t flags, fd;
		} t;
		char pad[128];
	} attr;
	memset(&attr, 0, sizeof(attr));
	attr.t.fd = rootfd;
	long tok = syscall(SYS_bpf, NX_BPF_TOKEN_CREATE, &attr, sizeof(attr.t));
	if (tok >= 0 || errno == ENOENT) /* ENOENT: owned, but nothing delegated */
		_exit(BPFGATE_VERIFY_OWNED);
	_exit(errno == EPERM ? BPFGATE_VERIFY_FOREIGN : BPFGATE_EXIT_SETUP);
}

/* Which of fds 3 to 66 were open when this process was executed (bit i:
 * fd 3+i), before the Go runtime opened any of its own: the only fds
 * `bpfgate run --preserve-fds` may pass on. Go reads it (InheritedFD). */
unsigned long long bpfgate_inherited_fds;

__attribute__((constructor)) static void bpfgate_nsexec(int argc, char **argv, char **envp) {
	(void)argc;
	(void)envp;
	for (int i = 0; i < 64; i++)
		if (fcntl(3 + i, F_GETFD) >= 0)
			bpfgate_inherited_fds |= 1ULL << i;
	const char *mode = getenv(BPFGATE_ENV_MODE);
	if (!mode)
		return;
	nx_fault = getenv(BPFGATE_ENV_FAULT);
	if (strcmp(mode, BPFGATE_MODE_SANDBOX) == 0)
		nx_supervise(argv);
	if (strcmp(mode, BPFGATE_MODE_ENTER) == 0)
		nx_enter();
	if (strcmp(mode, BPFGATE_MODE_VERIFY) == 0)
		nx_verify();
	/* Unknown modes fall through to Go, whose launch.Init reports them. */
}
