// SPDX-License-Identifier: GPL-2.0
// An ordinary libbpf loader with no token handling of its own: libbpf 1.4+
// finds the token at /sys/fs/bpf (or LIBBPF_BPF_TOKEN_PATH) by itself.
// It prints one JSON object: the libbpf version and the outcome of the load.
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level; (void)fmt; (void)ap;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJECT\n", argv[0]);
		return 2;
	}
	libbpf_set_print(quiet);
	printf("{\"libbpf\":\"%u.%u\",", libbpf_major_version(), libbpf_minor_version());

	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		printf("\"result\":\"open: %s\"}\n", strerror(errno));
		return 0;
	}
	int err = bpf_object__load(obj);
	if (err) {
		printf("\"result\":\"%s\"}\n", err == -EPERM ? "EPERM" : strerror(-err));
		bpf_object__close(obj);
		return 0;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "count_packets");
	struct bpf_map *map = bpf_object__find_map_by_name(obj, "packets");
	printf("\"result\":\"ok\",\"prog_fd_valid\":\"%s\",\"map_fd_valid\":\"%s\"}\n",
	       prog && bpf_program__fd(prog) >= 0 ? "yes" : "no",
	       map && bpf_map__fd(map) >= 0 ? "yes" : "no");
	bpf_object__close(obj);
	return 0;
}
