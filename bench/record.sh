#!/usr/bin/env bash
# What recording bpf() calls (bpfgate profile) costs a workload per system
# call: getppid and bpf(BPF_MAP_LOOKUP_ELEM) pass the recorder's filter, a
# failing bpf(BPF_MAP_CREATE) is notified. Plain and recorded in one run,
# then the floor of the same notified round trip in plain C on this machine
# (bench/floor/notify), as the baseline the recorder is held against.
# Run as root:  bash bench/record.sh [CALLS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
trap 'rm -rf "$out"' EXIT
chmod 755 "$out"
go build -o "$out/record" ./bench/record
cc -O2 -Wall -o "$out/notify" bench/floor/notify/notify.c
calls=${1:-200000} rounds=${2:-5}
"$out/record" -n "$calls" -rounds "$rounds" -c "$out/notify" | tee "$out/record.txt"
floor=$("$out/notify" "$calls" "$rounds")
echo "floor (C supervisor, same steps, no Go, no sandbox): $floor"
awk -v f="$floor" '
	BEGIN { gsub(/[{}"]/, "", f); split(f, kv, ","); for (i in kv) { split(kv[i], p, ":"); v[p[1]] = p[2] } }
	/BPF_MAP_CREATE/ { d = $(NF-1); printf "%s: recorder %+.0f ns, C floor %+.0f ns, ratio %.2f\n", ($0 ~ /, C/ ? "notified call, C workload" : "notified call, Go workload"), d, v["notified"] - v["plain"], d / (v["notified"] - v["plain"]) }
' "$out/record.txt"
