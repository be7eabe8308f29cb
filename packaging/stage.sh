#!/usr/bin/env bash
# Builds what an installation of bpfgate holds into OUTDIR:
#   OUTDIR/bpfgate                  the binary (cgo: the sandbox needs its C helpers)
#   OUTDIR/man/*.1                  man pages, from the binary's own command tree
#   OUTDIR/completions/{bpfgate.bash,_bpfgate,bpfgate.fish}
#   OUTDIR/bpfgate-preload.service  the systemd unit, running BINDIR/bpfgate
# and with BPFGATE_K8S=1 also the Kubernetes components:
#   OUTDIR/bpfgate-k8s              bpfgate built with -tags k8s, which
#                                   `bpfgate k8s ...` runs from BINDIR
#   OUTDIR/man-k8s/bpfgate-k8s*.1   the pages of its k8s commands, which
#                                   replace OUTDIR/man/bpfgate-k8s.1 (the
#                                   page of the first binary's hand-over)
# Usage: [BPFGATE_K8S=1] packaging/stage.sh OUTDIR BINDIR
set -euo pipefail
if [ $# -ne 2 ]; then
	echo "usage: $0 OUTDIR BINDIR (BINDIR: where bpfgate will be installed, e.g. /usr/bin)" >&2
	exit 2
fi
out=$1 bindir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
: "${GO:=go}"

# Dates in the man pages and the package: the last commit's, so that a
# rebuild of the same commit gives the same files.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
	export SOURCE_DATE_EPOCH
fi

# -buildvcs on the command line wins over a GOFLAGS=-buildvcs=false in the
# environment: `bpfgate version` reports the commit. (Go stamps a clone, not
# a `git worktree` checkout, whose .git is a file.)
CGO_ENABLED=1 "$GO" build -trimpath -buildvcs=auto -o "$out/bpfgate" ./cmd/bpfgate

rm -rf "$out/man" "$out/completions"
# The man pages show flag defaults: generate them with the default config path.
env -u BPFGATE_CONFIG "$out/bpfgate" man "$out/man"
mkdir -p "$out/completions"
"$out/bpfgate" completion bash >"$out/completions/bpfgate.bash"
"$out/bpfgate" completion zsh >"$out/completions/_bpfgate"
"$out/bpfgate" completion fish >"$out/completions/bpfgate.fish"

# The unit in contrib/ runs /usr/local/bin/bpfgate (a manual install).
unit=contrib/systemd/bpfgate-preload.service
grep -q '^ExecStart=/usr/local/bin/bpfgate ' "$unit" || {
	echo "$unit: no ExecStart=/usr/local/bin/bpfgate line to point at $bindir" >&2
	exit 1
}
sed "s|/usr/local/bin|$bindir|g" "$unit" >"$out/bpfgate-preload.service"

if [ "${BPFGATE_K8S:-}" = 1 ]; then
	CGO_ENABLED=1 "$GO" build -tags k8s -trimpath -buildvcs=auto -o "$out/bpfgate-k8s" ./cmd/bpfgate
	rm -rf "$out/man-k8s"
	mkdir -p "$out/man-k8s"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	env -u BPFGATE_CONFIG "$out/bpfgate-k8s" man "$tmp"
	# Every other page is the same as the first binary's. bpfgate-k8s.1
	# goes with the binary it names (it lists the k8s commands; the first
	# binary's only says to install it).
	mv "$tmp"/bpfgate-k8s.1 "$tmp"/bpfgate-k8s-*.1 "$out/man-k8s/"
	rm "$out/man/bpfgate-k8s.1"
fi
