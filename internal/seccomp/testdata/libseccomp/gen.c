/*
 * The filters libseccomp builds for the NN.json seccomp sections next to
 * this file, as runc and crun build them (rule by rule, in order; a rule
 * whose action is the default is left out by the runtime, so there is none).
 * Regenerate with:
 *   gcc -o /tmp/seccomp-gen gen.c -lseccomp && for n in 01 02 03 04 05 06 07 08 09 10 11 14 15 16; do /tmp/seccomp-gen $n >$n.bpf; done
 * (libseccomp 2.5.4 made the files here.)
 */
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>

#define A SCMP_ACT_ALLOW
#define D SCMP_ACT_ERRNO(1)
#define BPF 321 /* x86_64 */

int main(int argc, char **argv) {
	if (argc != 2)
		return 2;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int r1 = 0, r2 = 0;
	switch (atoi(argv[1])) {
	case 1: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); r2 = seccomp_rule_add(ctx, D, BPF, 0); break;
	case 2: r1 = seccomp_rule_add(ctx, D, BPF, 0); r2 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); break;
	case 3: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_EQ, 0)); r2 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); break;
	case 4: r1 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); r2 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_EQ, 0)); break;
	case 5: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A1(SCMP_CMP_EQ, 5)); r2 = seccomp_rule_add(ctx, D, BPF, 0); break;
	case 6: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); r2 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_EQ, 0)); break;
	case 7: r1 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_EQ, 0)); r2 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); break;
	case 8: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_LT, 10)); r2 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_GT, 3)); break;
	case 9: r1 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_GT, 3)); r2 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_LT, 10)); break;
	case 10: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_NE, 5)); r2 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_NE, 0)); break;
	case 11: r1 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_NE, 0)); r2 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_NE, 5)); break;
	case 14: r1 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, 0xf0, 0)); r2 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); break;
	case 15: r1 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_LE, 40)); r2 = seccomp_rule_add(ctx, A, BPF, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, 0xf0, 0)); break;
	case 16: r1 = seccomp_rule_add(ctx, D, BPF, 1, SCMP_A0(SCMP_CMP_EQ, 36)); r2 = seccomp_rule_add(ctx, A, BPF, 0); break;
	default: return 2;
	}
	if (r1 || r2)
		return 1;
	return seccomp_export_bpf(ctx, 1) ? 1 : 0;
}
