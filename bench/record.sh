#!/usr/bin/env bash
# What recording bpf() calls (bpfgate profile) costs a workload per system
# call: getppid and bpf(BPF_MAP_LOOKUP_ELEM) pass the recorder's filter, a
# failing bpf(BPF_MAP_CREATE) is notified. Plain and recorded in one run.
# Run as root:  bash bench/record.sh [CALLS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
trap 'rm -rf "$out"' EXIT
chmod 755 "$out"
go build -o "$out/record" ./bench/record
"$out/record" -n "${1:-200000}" -rounds "${2:-5}"
