#!/usr/bin/env bash
# Builds two packages, packaged by nfpm used as a library (packaging/main.go,
# a module of its own):
#   dist/bpfgate_VERSION-1_ARCH.deb      the binary (with cgo), its man pages
#                                        and shell completions, the systemd
#                                        unit and the docs (nfpm.yaml)
#   dist/bpfgate-k8s_VERSION-1_ARCH.deb  bpfgate-k8s, the -tags k8s build that
#                                        `bpfgate k8s` runs, and its man pages;
#                                        depends on bpfgate of the same
#                                        version (nfpm-k8s.yaml)
# Usage: packaging/build-deb.sh [DISTDIR]   (default: dist)
# Prints the paths of the two .debs, bpfgate's then bpfgate-k8s's, on its
# last two lines.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dist=${1:-$root/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
: "${GO:=go}"
export GO

if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
	SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct)
	export SOURCE_DATE_EPOCH
fi

stage=$dist/stage
rm -rf "$stage"
BPFGATE_K8S=1 "$root/packaging/stage.sh" "$stage" /usr/bin >&2
# Debian installs man pages compressed; -n leaves the time out of the header.
gzip -9n "$stage"/man/*.1 "$stage"/man-k8s/*.1
# Built once, run twice.
"$GO" -C "$root/packaging" build -o "$stage/mkdeb" .
"$stage/mkdeb" -config "$root/packaging/nfpm.yaml" -root "$root" -stage "$stage" -out "$dist"
"$stage/mkdeb" -config "$root/packaging/nfpm-k8s.yaml" -binary bpfgate-k8s -root "$root" -stage "$stage" -out "$dist"
