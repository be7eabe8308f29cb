#!/usr/bin/env bash
# Builds dist/bpfgate_VERSION-1_ARCH.deb: the binary (with cgo), its man
# pages and shell completions, the systemd unit and the docs, packaged by
# nfpm used as a library (packaging/main.go, a module of its own).
# Usage: packaging/build-deb.sh [DISTDIR]   (default: dist)
# Prints the path of the .deb on its last line.
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
"$root/packaging/stage.sh" "$stage" /usr/bin >&2
# Debian installs man pages compressed; -n leaves the time out of the header.
gzip -9n "$stage"/man/*.1
"$GO" -C "$root/packaging" run . -config nfpm.yaml -root "$root" -stage "$stage" -out "$dist"
