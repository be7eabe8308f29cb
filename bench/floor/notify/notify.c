/* The floor of a recorded bpf() call on this machine: the same round trip
 * as package record (a seccomp notify filter on bpf(2); the supervisor
 * receives, reads the bpf_attr with process_vm_readv, checks the
 * notification is still valid and answers CONTINUE, with the synchronous
 * wake-up flag), in plain C, between two processes, with no Go runtime and
 * no sandbox. bench/record.sh prints it next to the recorder's cost.
 *
 * Usage: notify CALLS ROUNDS; prints the median ns per call, plain and
 * notified, as JSON. notify loop CALLS ROUNDS only times the calls (a C
 * workload for bench/record, which records it or not). */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#endif

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmpd(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* loop times calls of a bpf(BPF_MAP_CREATE) that fails at once (EINVAL). */
static double loop(long calls) {
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	double t0 = now();
	for (long i = 0; i < calls; i++)
		syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
	return (now() - t0) / calls;
}

static void die(const char *what) {
	perror(what);
	exit(1);
}

int main(int argc, char **argv) {
	if (argc == 4 && strcmp(argv[1], "loop") == 0) {
		long n = atol(argv[2]);
		int r = atoi(argv[3]);
		if (n <= 0 || r <= 0 || r > 100)
			return 2;
		double t[100];
		for (int i = 0; i < r; i++)
			t[i] = loop(n);
		qsort(t, r, sizeof(double), cmpd);
		printf("{\"bpf(BPF_MAP_CREATE) EINVAL, C\":%.1f}\n", t[r / 2]);
		return 0;
	}
	long calls = argc > 1 ? atol(argv[1]) : 200000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	if (calls <= 0 || rounds <= 0 || rounds > 100) {
		fprintf(stderr, "usage: notify CALLS ROUNDS (1..100)\n");
		return 2;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		double plain[100], notified[100];
		for (int r = 0; r < rounds; r++)
			plain[r] = loop(calls);
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bpf, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = {.len = 4, .filter = f};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			die("no_new_privs");
		int l = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
		if (l < 0)
			die("seccomp");
		char cbuf[CMSG_SPACE(sizeof(int))] = {0}, byte = 'l';
		struct iovec io = {&byte, 1};
		struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &l, sizeof(int));
		if (sendmsg(sv[1], &m, 0) < 0)
			die("sendmsg");
		close(l);
		for (int r = 0; r < rounds; r++)
			notified[r] = loop(calls);
		qsort(plain, rounds, sizeof(double), cmpd);
		qsort(notified, rounds, sizeof(double), cmpd);
		printf("{\"plain\":%.1f,\"notified\":%.1f}\n", plain[rounds / 2], notified[rounds / 2]);
		fflush(stdout);
		_exit(0);
	}
	close(sv[1]);
	char cbuf[CMSG_SPACE(sizeof(int))], byte;
	struct iovec io = {&byte, 1};
	struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	if (recvmsg(sv[0], &m, 0) <= 0 || !CMSG_FIRSTHDR(&m))
		die("recvmsg");
	int l;
	memcpy(&l, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	ioctl(l, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (__u64)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
	for (;;) {
		struct seccomp_notif n;
		memset(&n, 0, sizeof(n));
		if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0)
			break; /* ENOENT: the child is gone */
		char attr[72];
		struct iovec local = {attr, sizeof(attr)}, remote = {(void *)n.data.args[1], sizeof(attr)};
		process_vm_readv(n.pid, &local, 1, &remote, 1, 0);
		ioctl(l, SECCOMP_IOCTL_NOTIF_ID_VALID, &n.id);
		struct seccomp_notif_resp resp = {.id = n.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
		ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &resp);
	}
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
