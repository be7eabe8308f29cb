// hostile: the owner of a user namespace attacking the helper that bpfgate
// sends into it. Tests in package launch build it with gcc and run it as an
// unprivileged host uid; it must never get anywhere.
//
// Usage: hostile MODE DIR
//
// It unshares a user and a mount namespace, maps itself to root there,
// mounts a tmpfs on DIR/mnt, makes DIR/mnt/target (the directory bpfgate is
// asked to mount on) and prints one JSON line {"event":"ready",...}. Then it
// scans /proc in a tight loop for processes in its user namespace other than
// itself and attacks each once, as MODE says:
//
//   none    only report them ("saw")
//   ptrace  PTRACE_SEIZE and PTRACE_ATTACH
//   getfd   freeze it (SIGSTOP, so it cannot race us), pidfd_getfd fds 0..63,
//           and over every unix socket among them offer host root an fs
//           context of our own ("context" + an fsopen(FSTYPE) fd); on "ready"
//           fsmount it onto the target; then SIGCONT
//   hold    pidfd_getfd fds 0..63 and keep them open for ever
//   stop    SIGSTOP it and leave it stopped
//   stop-late  wait until a new mount appears on the target (the helper is
//           about to report success and exit), then SIGSTOP it there
//   kill    SIGKILL it
//
// Every step is reported as one JSON line on stdout. On stdin it takes
// "check" (statfs the target, try BPF_TOKEN_CREATE on it); it exits on stdin
// EOF or SIGTERM. FSTYPE is ramfs unless the environment says HOSTILE_FSTYPE.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x4
#endif
#define BPF_TOKEN_CREATE 36
#define MAX_PID (1 << 22)

static const char *mode;
static const char *fstype = "ramfs";
static char target[4096];
static struct stat myns;
static unsigned char seen[MAX_PID / 8];

static const char *ename(int e) {
	const char *s = strerrorname_np(e);
	return s ? s : "E?";
}

// json appends s to out as a JSON string.
static void json(char *out, size_t n, const char *s) {
	size_t o = strlen(out);
	if (o + 2 >= n) return;
	out[o++] = '"';
	for (; *s && o + 8 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = c;
		} else if (c < 0x20 || c >= 0x7f) {
			o += snprintf(out + o, n - o, "\\u%04x", c);
		} else {
			out[o++] = c;
		}
	}
	out[o++] = '"';
	out[o] = 0;
}

// emit prints one event: pairs of key and value; values starting with '#'
// are numbers (the '#' dropped), others strings.
static void emit(const char *event, ...) {
	char line[8192] = "{\"event\":";
	json(line, sizeof line, event);
	va_list ap;
	va_start(ap, event);
	const char *k;
	while ((k = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);
		strcat(line, ",");
		json(line, sizeof line, k);
		strcat(line, ":");
		if (v[0] == '#')
			strncat(line, v + 1, sizeof line - strlen(line) - 2);
		else
			json(line, sizeof line, v);
	}
	va_end(ap);
	printf("%s}\n", line);
	fflush(stdout);
}

static const char *num(char *buf, long v) {
	snprintf(buf, 32, "#%ld", v);
	return buf;
}

static void die(const char *what) {
	emit("fatal", "what", what, "errno", ename(errno), NULL);
	exit(1);
}

static void write_file(const char *path, const char *data) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data)) die(path);
	close(fd);
}

static char proc_state(int pid) {
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

static long ms_since(struct timespec *t0) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void wait_stopped(int pid) {
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < 200) {
		char s = proc_state(pid);
		if (s == 'T' || s == 't' || s == 0 || s == 'Z') return;
		usleep(100);
	}
}

// reap waits (bounded) for a ptrace stop or the end of the tracee.
static void reap(int pid) {
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int st;
	while (ms_since(&t0) < 1000) {
		int r = waitpid(pid, &st, __WALL | WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR)) return;
		usleep(100);
	}
}

static void attack_ptrace(int pid) {
	char b[32];
	if (ptrace(PTRACE_SEIZE, pid, 0, 0) == 0) {
		emit("ptrace_ok", "pid", num(b, pid), "op", "seize", NULL);
		ptrace(PTRACE_INTERRUPT, pid, 0, 0);
		reap(pid);
		ptrace(PTRACE_DETACH, pid, 0, 0);
	} else {
		emit("ptrace_failed", "pid", num(b, pid), "op", "seize", "errno", ename(errno), NULL);
	}
	if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
		emit("ptrace_ok", "pid", num(b, pid), "op", "attach", NULL);
		reap(pid);
		ptrace(PTRACE_DETACH, pid, 0, 0);
	} else {
		emit("ptrace_failed", "pid", num(b, pid), "op", "attach", "errno", ename(errno), NULL);
	}
	// PTRACE_ATTACH's SIGSTOP may have started a group stop in another
	// thread: this mode is about ptrace, not about stopping the helper.
	kill(pid, SIGCONT);
}

static int send_fd(int sock, const char *msg, int fd) {
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof cbuf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

// try_mount attaches a detached mount or an fs context at the target.
static void try_mount(int pid, int fd, const char *what) {
	char b[32], m[32];
	int mfd = syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, 0);
	if (mfd < 0) {
		emit("fsmount_failed", "pid", num(b, pid), "what", what, "errno", ename(errno), NULL);
		mfd = dup(fd); // perhaps a mount fd already
	}
	struct statfs sf;
	if (fstatfs(mfd, &sf) == 0) {
		snprintf(m, sizeof m, "0x%lx", (unsigned long)sf.f_type);
	} else {
		snprintf(m, sizeof m, "?");
	}
	if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) == 0) {
		emit(strcmp(what, "own") == 0 ? "mounted_ramfs" : "mounted_fd", "pid", num(b, pid),
		     "what", what, "fstype", fstype, "magic", m, "target", target, NULL);
	} else {
		emit("move_mount_failed", "pid", num(b, pid), "what", what, "magic", m, "errno", ename(errno), NULL);
	}
	close(mfd);
}

// offer hands host root an fs context of ours over sock, as the helper would.
static void offer(int pid, int sock, int fd) {
	char b[32], f[32];
	int ctx = syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
	if (ctx < 0) {
		emit("error", "pid", num(b, pid), "what", "fsopen", "errno", ename(errno), NULL);
		return;
	}
	if (send_fd(sock, "context", ctx) < 0) {
		emit("send_failed", "pid", num(b, pid), "fd", num(f, fd), "errno", ename(errno), NULL);
		close(ctx);
		return;
	}
	emit("sent_ramfs", "pid", num(b, pid), "fd", num(f, fd), "fstype", fstype, NULL);
	struct pollfd p = {.fd = sock, .events = POLLIN};
	if (poll(&p, 1, 3000) <= 0) {
		emit("no_reply", "pid", num(b, pid), NULL);
		close(ctx);
		return;
	}
	char msg[4096];
	char cbuf[CMSG_SPACE(8 * sizeof(int))];
	struct iovec iov = {.iov_base = msg, .iov_len = sizeof msg - 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0) {
		emit("recv_failed", "pid", num(b, pid), "errno", ename(errno), NULL);
		close(ctx);
		return;
	}
	msg[n] = 0;
	int fds[8], nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
		int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < k && nfds < 8; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	emit("reply", "pid", num(b, pid), "msg", msg, "fds", num(f, nfds), NULL);
	for (int i = 0; i < nfds; i++) {
		try_mount(pid, fds[i], "received");
		close(fds[i]);
	}
	if (strcmp(msg, "ready") == 0) {
		try_mount(pid, ctx, "own");
		send_fd(sock, "mounted", -1);
	}
	close(ctx);
}

static int is_unix_socket(int fd) {
	struct stat st;
	int dom = 0;
	socklen_t l = sizeof dom;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 && dom == AF_UNIX;
}

static void attack_getfd(int pid, int keep) {
	char b[32], f[32];
	int pfd = syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0) {
		emit("getfd_failed", "pid", num(b, pid), "op", "pidfd_open", "errno", ename(errno), NULL);
		return;
	}
	int got = 0, err = 0;
	for (int fd = 0; fd < 64; fd++) {
		int nfd = syscall(SYS_pidfd_getfd, pfd, fd, 0);
		if (nfd < 0) {
			if (errno != EBADF && !err) err = errno;
			continue;
		}
		got++;
		int sock = is_unix_socket(nfd);
		emit("getfd_ok", "pid", num(b, pid), "fd", num(f, fd), "kind", sock ? "unix" : "other", NULL);
		if (keep) continue; // held for ever: whoever waits for EOF on it waits for ever
		if (sock) offer(pid, nfd, fd);
		close(nfd);
	}
	if (!got) emit("getfd_failed", "pid", num(b, pid), "op", "pidfd_getfd", "errno", ename(err ? err : EBADF), NULL);
	if (!keep) close(pfd);
}

static uint64_t target_mnt_id(void) {
	struct statx sx;
	if (statx(AT_FDCWD, target, 0, STATX_MNT_ID, &sx) != 0 || !(sx.stx_mask & STATX_MNT_ID)) return 0;
	return sx.stx_mnt_id;
}

// stop_late stops the helper right after it attached its mount, when the
// privileged side has nothing left to wait for but the helper's exit.
static void stop_late(int pid) {
	char b[32];
	uint64_t before = target_mnt_id();
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 1; ms_since(&t0) < 5000; i++) {
		if (target_mnt_id() != before) {
			if (kill(pid, SIGSTOP) == 0)
				emit("stopped", "pid", num(b, pid), "when", "after mount", NULL);
			else
				emit("stop_failed", "pid", num(b, pid), "errno", ename(errno), NULL);
			return;
		}
		if (i % 64 == 0) {
			char s = proc_state(pid);
			if (s == 0 || s == 'Z' || s == 'X') break;
		}
	}
	emit("stop_missed", "pid", num(b, pid), NULL);
}

static void attack(int pid) {
	char b[32];
	if (strcmp(mode, "ptrace") == 0) {
		attack_ptrace(pid);
	} else if (strcmp(mode, "getfd") == 0) {
		if (kill(pid, SIGSTOP) == 0) {
			wait_stopped(pid);
			emit("stopped", "pid", num(b, pid), NULL);
		}
		attack_getfd(pid, 0);
		kill(pid, SIGCONT);
	} else if (strcmp(mode, "hold") == 0) {
		attack_getfd(pid, 1);
	} else if (strcmp(mode, "stop") == 0) {
		if (kill(pid, SIGSTOP) == 0)
			emit("stopped", "pid", num(b, pid), NULL);
		else
			emit("stop_failed", "pid", num(b, pid), "errno", ename(errno), NULL);
	} else if (strcmp(mode, "stop-late") == 0) {
		stop_late(pid);
	} else if (strcmp(mode, "kill") == 0) {
		if (kill(pid, SIGKILL) == 0)
			emit("killed", "pid", num(b, pid), NULL);
		else
			emit("kill_failed", "pid", num(b, pid), "errno", ename(errno), NULL);
	}
}

// scan attacks every new process of our user namespace once. A helper that
// made itself non-dumpable hides /proc/PID/ns from us, but as the owner of
// its user namespace we may still signal it: kill(pid, 0) finds it.
static void scan(void) {
	DIR *d = opendir("/proc");
	if (!d) die("opendir /proc");
	struct dirent *e;
	int self = getpid();
	while ((e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid >= MAX_PID || pid == self) continue;
		if (seen[pid / 8] & (1 << (pid % 8))) continue;
		if (kill(pid, 0) != 0) continue;
		char s = proc_state(pid);
		if (s == 0 || s == 'Z' || s == 'X') continue;
		char path[64], b[32];
		struct stat st;
		const char *how = "ns";
		snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
		if (stat(path, &st) == 0) {
			if (st.st_ino != myns.st_ino || st.st_dev != myns.st_dev) continue;
		} else {
			how = "signal";
		}
		seen[pid / 8] |= 1 << (pid % 8);
		emit("saw", "pid", num(b, pid), "how", how, NULL);
		attack(pid);
	}
	closedir(d);
}

static void check(void) {
	char m[32];
	int fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		emit("check", "error", ename(errno), NULL);
		return;
	}
	struct statfs sf;
	if (fstatfs(fd, &sf) != 0) {
		emit("check", "error", ename(errno), NULL);
		close(fd);
		return;
	}
	snprintf(m, sizeof m, "0x%lx", (unsigned long)sf.f_type);
	uint32_t attr[2] = {0, (uint32_t)fd};
	int tok = syscall(SYS_bpf, BPF_TOKEN_CREATE, attr, sizeof attr);
	emit("check", "magic", m, "token", tok >= 0 ? "ok" : ename(errno), NULL);
	if (tok >= 0) close(tok);
	close(fd);
}

// commands reads stdin without blocking; it exits on EOF.
static void commands(void) {
	static char buf[256];
	static size_t len;
	struct pollfd p = {.fd = 0, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0) return;
	ssize_t n = read(0, buf + len, sizeof buf - 1 - len);
	if (n <= 0) exit(0);
	len += n;
	buf[len] = 0;
	char *nl;
	while ((nl = strchr(buf, '\n'))) {
		*nl = 0;
		if (strcmp(buf, "check") == 0) check();
		else emit("error", "what", "unknown command", "command", buf, NULL);
		len -= nl + 1 - buf;
		memmove(buf, nl + 1, len + 1);
	}
	if (len == sizeof buf - 1) len = 0;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: hostile none|ptrace|getfd|hold|stop|stop-late|kill DIR\n");
		return 2;
	}
	mode = argv[1];
	if (getenv("HOSTILE_FSTYPE")) fstype = getenv("HOSTILE_FSTYPE");
	char buf[64], mnt[3072];
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) die("unshare");
	write_file("/proc/self/setgroups", "deny");
	snprintf(buf, sizeof buf, "0 %d 1", uid);
	write_file("/proc/self/uid_map", buf);
	snprintf(buf, sizeof buf, "0 %d 1", gid);
	write_file("/proc/self/gid_map", buf);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("make / private");
	snprintf(mnt, sizeof mnt, "%s/mnt", argv[2]);
	if (mount("hostile", mnt, "tmpfs", 0, "mode=0755") != 0) die("mount tmpfs");
	snprintf(target, sizeof target, "%s/target", mnt);
	if (mkdir(target, 0755) != 0) die("mkdir target");
	if (stat("/proc/self/ns/user", &myns) != 0) die("stat own user namespace");
	char b[32];
	emit("ready", "pid", num(b, getpid()), "target", target, "mode", mode, NULL);
	for (;;) {
		commands();
		scan();
	}
}
