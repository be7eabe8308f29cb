#!/usr/bin/env bash
# Lists 10,000 pinned maps with bpfgate ls --json and with Debian's bpftool
# (-j -f map show, which also walks every bpffs to find pins), in one run.
# Run as root:  bash bench/pins.sh [RUNS] [MAPS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
maps=${2:-10000}
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
mnt="$out/bpffs"
mkdir "$mnt"
cleanup() { umount -l "$mnt" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
go build -o "$out/bpfgate" ./cmd/bpfgate
go build -o "$out/compare" ./bench/compare
go build -o "$out/pinmaps" ./bench/pinmaps
mount -t bpf bpf "$mnt"
"$out/pinmaps" -n "$maps" "$mnt"
echo "== $maps pinned maps: bpftool -j -f map show (baseline) against bpfgate ls --json (every bpffs)"
"$out/compare" -n "$n" "bpftool -j -f map show" "$out/bpfgate ls --json"
echo "== the same, bpfgate ls --json on the one directory"
"$out/compare" -n "$n" "bpftool -j -f map show" "$out/bpfgate ls --json $mnt"
echo "== output size: bpftool $(bpftool -j -f map show | wc -c) bytes, bpfgate $("$out/bpfgate" ls --json | wc -c) bytes"
