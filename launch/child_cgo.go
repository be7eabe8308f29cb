//go:build cgo && linux

package launch

/*
// The workload half of `bpfgate run`, in C, so that it runs before the Go
// runtime starts: the child is re-executed once per workload start, and a
// Go runtime start costs milliseconds here. It speaks the same protocol as
// bpffs.MountDelegated and childRun, which remain the fallback for builds
// without cgo. Keep the three in step.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#define BPFGATE_FSOPEN_CLOEXEC 1
#define BPFGATE_FSMOUNT_CLOEXEC 1
#define BPFGATE_MOVE_MOUNT_F_EMPTY_PATH 4
#define BPFGATE_SOCK 3

static void bpfgate_send(const char *msg) {
	(void)send(BPFGATE_SOCK, msg, strlen(msg), MSG_NOSIGNAL);
}

static void bpfgate_report(const char *fmt, ...) {
	char buf[4096] = "error: ";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	bpfgate_send(buf);
}

static void bpfgate_fault(const char *fault, const char *step) {
	if (fault && strcmp(fault, step) == 0)
		kill(getpid(), SIGKILL);
}

static int bpfgate_last_cap(void) {
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	return last;
}

__attribute__((constructor)) static void bpfgate_child(int argc, char **argv, char **envp) {
	const char *mode = getenv("_BPFGATE_CHILD");
	if (!mode || strcmp(mode, "run") != 0)
		return;
	(void)envp;
	fcntl(BPFGATE_SOCK, F_SETFD, FD_CLOEXEC);

	const char *target = getenv("_BPFGATE_TARGET");
	const char *caps = getenv("_BPFGATE_CAPS");
	const char *fault = getenv("BPFGATE_FAULT");
	if (!target || !caps || argc < 2) {
		bpfgate_report("bad child environment");
		_exit(125);
	}
	char *end;
	unsigned long long keep = strtoull(caps, &end, 16);
	if (*end) {
		bpfgate_report("bad capability mask \"%s\"", caps);
		_exit(125);
	}

	bpfgate_fault(fault, "fsopen");
	int fsfd = syscall(SYS_fsopen, "bpf", BPFGATE_FSOPEN_CLOEXEC);
	if (fsfd < 0) {
		bpfgate_report("fsopen bpf: %s", strerror(errno));
		_exit(125);
	}

	bpfgate_fault(fault, "send");
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = "context", .iov_len = 7};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fsfd, sizeof(int));
	if (sendmsg(BPFGATE_SOCK, &msg, MSG_NOSIGNAL) < 0)
		_exit(125);

	char reply[4096];
	ssize_t n;
	do
		n = recv(BPFGATE_SOCK, reply, sizeof(reply) - 1, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != 5 || memcmp(reply, "ready", 5) != 0)
		_exit(125); // the host has the error

	bpfgate_fault(fault, "attach");
	int mfd = syscall(SYS_fsmount, fsfd, BPFGATE_FSMOUNT_CLOEXEC, 0);
	if (mfd < 0) {
		bpfgate_report("fsmount: %s", strerror(errno));
		_exit(125);
	}
	if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, BPFGATE_MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		bpfgate_report("mount bpffs on %s: %s", target, strerror(errno));
		_exit(125);
	}
	close(mfd);
	close(fsfd);

	bpfgate_fault(fault, "confirm");
	bpfgate_send("mounted");

	unsetenv("_BPFGATE_CHILD");
	unsetenv("_BPFGATE_TARGET");
	unsetenv("_BPFGATE_CAPS");
	unsetenv("BPFGATE_FAULT");

	int last = bpfgate_last_cap();
	for (int c = 0; c <= last; c++) {
		if (c < 64 && (keep >> c) & 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			bpfgate_report("drop capability %d from the bounding set: %s", c, strerror(errno));
			_exit(125);
		}
	}

	bpfgate_fault(fault, "exec");
	bpfgate_send("exec");
	const char *cmd = argv[1];
	int err = ENOENT;
	if (strchr(cmd, '/')) {
		execv(cmd, argv + 1);
		err = errno;
	} else {
		// Search PATH as Go's exec.LookPath does: directories the workload
		// cannot enter do not hide a command found later.
		const char *path = getenv("PATH");
		char cand[4096];
		int found = 0;
		for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; ; ) {
			const char *colon = strchr(p, ':');
			size_t len = colon ? (size_t)(colon - p) : strlen(p);
			if (len > 0 && snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, p, cmd) < (int)sizeof(cand) &&
			    access(cand, F_OK) == 0) {
				found = 1;
				execv(cand, argv + 1);
				err = errno;
				cmd = cand;
				break;
			}
			if (!colon)
				break;
			p = colon + 1;
		}
		if (!found) {
			bpfgate_report("command \"%s\" not found in the workload's PATH", argv[1]);
			_exit(127);
		}
	}
	bpfgate_report("exec %s: %s%s", cmd, strerror(err),
		err == EACCES ? " (the workload runs as an unprivileged host uid: the program and every directory above it must be readable and searchable by others, e.g. install it under /usr/local/bin)" : "");
	_exit(err == ENOENT ? 127 : 126);
}
*/
import "C"
