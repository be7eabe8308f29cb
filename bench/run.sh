#!/usr/bin/env bash
# Measures bpfgate's per-start costs against baselines in the same run.
# Run as root:  bash bench/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
chmod 755 "$out"
trap 'rm -rf "$out"' EXIT
go build -o "$out/bpfgate" ./cmd/bpfgate
go build -o "$out/compare" ./bench/compare
for f in gohello cgohello goexecns; do go build -o "$out/$f" ./bench/floor/$f; done
bg="$out/bpfgate"

echo "== bpfgate run (a full sandbox) against unshare with the same namespaces"
full="unshare --user --map-root-user --mount --net --pid --cgroup --ipc --fork --mount-proc true"
"$out/compare" -n "$n" "$full" "$bg run -q --profile demo -- true" "$bg run -q --net host --profile demo -- true" "unshare -Urm true"

echo "== floors: what a Go program pays before any BPF work (see bench/floor/doc.go)"
"$out/compare" -n "$n" "unshare -Urm true" "$out/gohello" "$out/cgohello" "$out/goexecns"

echo "== cold CLI start, kernel names included (names cached per boot, and not cached)"
"$bg" names >/dev/null # warm the per-boot cache
"$out/compare" -n "$n" "true" "$bg check --profile demo" "env BPFGATE_NAMES_CACHE=off $bg check --profile demo"

echo "== probe of every map and program type, inside a workload"
"$bg" run -q --profile net -- "$bg" token probe | tail -1
