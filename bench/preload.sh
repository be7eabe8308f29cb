#!/usr/bin/env bash
# Cold apply of 50 preloaded objects against re-applying them unchanged.
# Each object is the shipped iterators example under its own name.
# Run as root:  bash bench/preload.sh [RUNS] [OBJECTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-7}
objs=${2:-50}
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
mnt="$out/bpffs"
mkdir "$mnt" "$out/manifests"
cleanup() { umount -l "$mnt" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
go build -o "$out/bpfgate" ./cmd/bpfgate
mount -t bpf bpf "$mnt"
obj=$(realpath examples/preload/iterators_bpfel.o)
for i in $(seq 1 "$objs"); do
	printf 'object: %s\nprograms:\n  - name: dump_bpf_map\n  - name: dump_bpf_prog\n' "$obj" >"$out/manifests/it$i.yaml"
done
bg="$out/bpfgate"
args=(preload apply --dir "$out/manifests" --root "$mnt/bpfgate")
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cold=() warm=()
for _ in $(seq 1 "$n"); do
	"$bg" unpin -r "$mnt/bpfgate" 2>/dev/null || true
	t0=$(now); "$bg" "${args[@]}" >/dev/null; t1=$(now)
	cold+=($(( (t1 - t0) / 1000 )))
	t0=$(now); "$bg" "${args[@]}" >/dev/null; t1=$(now)
	warm+=($(( (t1 - t0) / 1000 )))
done
c=$(printf '%s\n' "${cold[@]}" | median)
w=$(printf '%s\n' "${warm[@]}" | median)
echo "== $objs objects, median of $n: cold apply $((c / 1000)).$(( (c % 1000) / 100 )) ms, unchanged re-apply $((w / 1000)).$(( (w % 1000) / 100 )) ms"
awk -v c="$c" -v w="$w" 'BEGIN { printf "re-apply is %.1fx faster than cold apply (target: 20x)\n", c / w }'
