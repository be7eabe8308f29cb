#!/usr/bin/env bash
# `podman run` with a bpfgate.dev/bpf device against the same run without
# it, interleaved in one run. Needs root, podman, runc and busybox-static.
#   bash bench/podman.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
chmod 755 "$out"
image=localhost/bpfgate-bench:latest
spec=/var/run/cdi/bpfgate-bench.yaml
trap 'podman rmi -f $image >/dev/null 2>&1 || true; rm -f $spec; rm -rf "$out"' EXIT

go build -o "$out/bpfgate" ./cmd/bpfgate
go build -o "$out/compare" ./bench/compare
mkdir -p "$out/rootfs/bin" "$out/rootfs/proc" "$out/rootfs/sys" "$out/rootfs/dev"
cp "$(command -v busybox)" "$out/rootfs/bin/busybox"
ln -s busybox "$out/rootfs/bin/true"
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$out/containers.conf"
export CONTAINERS_CONF="$out/containers.conf"
tar -C "$out/rootfs" -c . | podman import - $image >/dev/null
"$out/bpfgate" cdi generate -o $spec 2>/dev/null
"$out/bpfgate" oci-hook seccomp -o "$out/seccomp.json"

common="run --rm --uidmap 0:100000:65536 --gidmap 0:100000:65536 --cap-add bpf --security-opt seccomp=$out/seccomp.json"
echo "== podman run with the demo device against without it"
"$out/compare" -n "$n" "podman $common $image true" "podman $common --device bpfgate.dev/bpf=demo $image true"
