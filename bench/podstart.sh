#!/usr/bin/env bash
# Pod start with the bpfgate device against without it, taking turns in one
# run (test/k8s's benchmarks, on the harness's own containerd, CRI-O and
# kubelet):
#   - through the CRI: crictl runp + create + start of a pod running
#     /bin/true with the CDI device bpfgate.dev/bpf=demo, on containerd and
#     on CRI-O (both with runc);
#   - through kubelet: a static pod from its manifest written to its
#     container started, with bpfgate.dev/bpf-demo from the device plugin.
# Each prints the medians, the ratio of the medians, the paired ratio and the
# ratio of the fastest starts (issue 12's target: at most 1.05), and the
# phases. Needs root and the binaries scripts/k8s-build.sh builds (scripts/deps.sh).
#   bash bench/podstart.sh [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
pairs=${1:-20}
CI=true go test -count=1 -run '^$' -bench 'CRIPodStart|KubeletPodStart' -benchtime "${pairs}x" -timeout 60m ./test/k8s |
	grep -E '^(Benchmark|ok|FAIL|---)|pairs|median'
