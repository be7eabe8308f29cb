#!/usr/bin/env bash
# What the bpf() audit tracer (bpfgate audit, bpfgate run --audit) costs per
# system call: getppid, a bpf() call it does not record (MAP_LOOKUP_ELEM)
# and one it records in full (a token MAP_CREATE the kernel refuses), timed
# in a sandboxed workload without the tracer and with each of its hooks
# (tracepoint syscalls:sys_exit_bpf; tp_btf sys_exit, the default where the
# kernel takes ia32 or x32 system calls), interleaved, in one
# run; first with the events read after the workload (the tracer's own
# cost), then read while it runs (a reader competing for the machine). The
# speed targets (issue 13): at most +500 ns per recorded bpf() call, at most
# +30 ns per other system call.
# Run as root:  bash bench/audit.sh [CALLS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
trap 'rm -rf "$out"' EXIT
chmod 755 "$out"
go build -o "$out/audit" ./bench/audit
"$out/audit" -n "${1:-50000}" -rounds "${2:-5}"
"$out/audit" -n "${1:-50000}" -rounds "${2:-5}" -concurrent
