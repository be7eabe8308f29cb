// compat_bpf makes bpf(BPF_MAP_CREATE) calls through the other system call
// ABIs of x86-64 from a 64-bit process, with the BPF token of a delegated
// workload, for TestCompat: ia32 (int 0x80, the i386 number 357) and x32
// (the syscall instruction, the 64-bit number 321 with bit 30 set).
// bpfgate's sandbox refuses both, so the workload cannot make them itself:
// this helper, run by root, takes the workload's token (pidfd_getfd) and
// joins its user namespace, where it has what the workload would have with
// the token, then asks through each ABI for a hash map (delegated) and a
// ringbuf (not). int 0x80 passes 32-bit pointers: the attr lives below
// 4 GiB (MAP_32BIT), as it would in an x32 process. It prints each call's
// raw return value (an fd, or -errno: -38 is ENOSYS, a kernel without the
// ABI), one per line: ia32 hash, ia32 ringbuf, x32 hash, x32 ringbuf.
//
// Usage: compat_bpf PID TOKEN_FD
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NR_BPF32 357
#define NR_BPF_X32 (0x40000000 | 321)

static void map_attr(unsigned char *attr, unsigned int type, int token)
{
	unsigned int v;

	memset(attr, 0, 128);
	v = type, memcpy(attr + 0, &v, 4);      /* map_type */
	v = type == 27 ? 0 : 4;
	memcpy(attr + 4, &v, 4);                /* key_size */
	memcpy(attr + 8, &v, 4);                /* value_size */
	v = 4096, memcpy(attr + 12, &v, 4);     /* max_entries */
	v = 1U << 16, memcpy(attr + 16, &v, 4); /* map_flags: BPF_F_TOKEN_FD */
	memcpy(attr + 28, "audit_compat", 12);  /* map_name */
	memcpy(attr + 76, &token, 4);           /* map_token_fd */
}

static long map_create_ia32(unsigned char *attr, unsigned int type, int token)
{
	long ret;

	map_attr(attr, type, token);
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(NR_BPF32), "b"(0), "c"((unsigned int)(unsigned long)attr), "d"(80)
			 : "memory");
	return ret;
}

static long map_create_x32(unsigned char *attr, unsigned int type, int token)
{
	long ret;

	map_attr(attr, type, token);
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"((long)NR_BPF_X32), "D"(0L), "S"((long)attr), "d"(80L)
			 : "rcx", "r11", "memory");
	return ret;
}

int main(int argc, char **argv)
{
	char path[64];

	if (argc != 3)
		return 2;
	int pidfd = syscall(SYS_pidfd_open, atoi(argv[1]), 0);
	if (pidfd < 0)
		return perror("pidfd_open"), 3;
	int token = syscall(SYS_pidfd_getfd, pidfd, atoi(argv[2]), 0);
	if (token < 0)
		return perror("pidfd_getfd"), 3;
	snprintf(path, sizeof(path), "/proc/%s/ns/user", argv[1]);
	int ns = open(path, O_RDONLY);
	if (ns < 0 || setns(ns, CLONE_NEWUSER))
		return perror("setns"), 3;
	unsigned char *attr = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (attr == MAP_FAILED)
		return perror("mmap"), 3;
	printf("%ld\n", map_create_ia32(attr, 1, token));  /* hash */
	printf("%ld\n", map_create_ia32(attr, 27, token)); /* ringbuf */
	printf("%ld\n", map_create_x32(attr, 1, token));
	printf("%ld\n", map_create_x32(attr, 27, token));
	return 0;
}
