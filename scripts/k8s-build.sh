#!/usr/bin/env bash
# Builds (once) and prints the path of the Kubernetes and container runtime
# binaries the end-to-end tests in test/k8s run, every one at a pinned
# version from the Go module proxy:
#
#   containerd, containerd-shim-runc-v2, ctr   containerd   v2.2.9
#   runc                                       runc         v1.4.3
#   crictl                                     cri-tools    v1.36.0
#   cni/loopback, cni/host-local               CNI plugins  v1.9.1
#   kubelet, kube-apiserver, kube-scheduler,   Kubernetes   v1.34.4
#   kubectl
#   etcd                                       etcd         v3.6.16
#   crio, pinns                                CRI-O        v1.34.0
#
# Why these: containerd 2.3+ crashes NRI on seccomp rules with errnoRet;
# Debian's runc 1.1.5 refuses pods with a user namespace; the proxy serves
# only some versions, so every one is pinned here.
#
# Each component builds in a throwaway module of its own, never in
# bpfgate's go.mod. The binaries land in
# /var/cache/bpfgate-ci/k8s-KEY/bin, KEY being a hash of this script (and so
# of every version in it): changing it builds a new directory, and builds
# no run as root has used for a week are removed. The Go module and build caches under
# /var/cache/bpfgate-ci/k8s-go are kept across keys, so a version bump
# rebuilds only what changed. A cold build takes about 9 minutes on 2 cores;
# a cached one returns at once. ROOT/versions records what was built.
#
# Usage: k8s-build.sh          build if needed (as root), print the path
#        k8s-build.sh --path   print the path if it is built, else say why
#                              not and exit 1 (any user)
set -euo pipefail

containerd_version=v2.2.9
runc_version=v1.4.3
critools_version=v1.36.0
cni_version=v1.9.1
k8s_version=v1.34.4
etcd_version=v3.6.16
crio_version=v1.34.0

cache=/var/cache/bpfgate-ci
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
key=$(sha256sum "$self" | cut -c1-12)
root=$cache/k8s-$key

if [ -e "$root/.complete" ]; then
	# A use as root keeps the build from being pruned (below).
	[ "$(id -u)" -ne 0 ] || touch "$root/.complete"
	echo "$root"
	exit 0
fi
if [ "${1:-}" = --path ]; then
	echo "no Kubernetes/runtime build at $root: run scripts/k8s-build.sh as root (about 9 minutes, Go module proxy)" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: building the Kubernetes/runtime binaries needs root (apt packages, $cache)" >&2
	exit 1
fi

command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
mkdir -p "$cache"
chmod 755 "$cache"
# One builder at a time; a second one waits and then finds the build made.
exec 9>"$cache/.k8s.lock"
flock 9
if [ -e "$root/.complete" ]; then
	echo "$root"
	exit 0
fi

# runc (and CRI-O) link libseccomp through pkg-config; pinns links glibc
# statically.
packages=(gcc libc6-dev libseccomp-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "k8s-build: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export GOMODCACHE=$cache/k8s-go/mod GOCACHE=$cache/k8s-go/build
# The proxy refuses list requests, which `go install pkg@version` makes:
# resolve in a module of our own instead. GOTOOLCHAIN=local: never fetch
# another Go.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local
tmp=$root.tmp
work=$cache/k8s-work
rm -rf "$tmp" "$work"
mkdir -p "$tmp/bin/cni" "$work"
log=$cache/k8s-build.log
: >"$log"
start=$(date +%s)
step() { echo "k8s-build: [$(($(date +%s) - start)) s] $*" >&2; }
fail() {
	echo "k8s-build: $* failed; last lines of $log:" >&2
	tail -n 25 "$log" >&2
	rm -rf "$tmp" "$work"
	exit 1
}

# wrapper NAME MODULE@VERSION...: a module named NAME requiring the given
# modules, in which `go build` then builds their commands.
wrapper() {
	local dir=$work/$1
	shift
	mkdir -p "$dir"
	printf 'module bpfgate-k8s-build/%s\n\ngo 1.24.0\n' "$(basename "$dir")" >"$dir/go.mod"
	(cd "$dir" && go get "$@") >>"$log" 2>&1
}
# gobuild NAME OUT PACKAGE [go build flags...], in the module of wrapper NAME.
gobuild() {
	local dir=$work/$1 out=$2 pkg=$3
	shift 3
	(cd "$dir" && go build -trimpath "$@" -o "$tmp/bin/$out" "$pkg") >>"$log" 2>&1
}

step "containerd $containerd_version"
wrapper containerd "github.com/containerd/containerd/v2@$containerd_version" || fail containerd
for c in containerd containerd-shim-runc-v2 ctr; do
	CGO_ENABLED=1 gobuild containerd "$c" "github.com/containerd/containerd/v2/cmd/$c" -tags no_btrfs \
		-ldflags "-X github.com/containerd/containerd/v2/version.Version=${containerd_version#v}" || fail "$c"
done

step "runc $runc_version"
wrapper runc "github.com/opencontainers/runc@$runc_version" || fail runc
CGO_ENABLED=1 gobuild runc runc github.com/opencontainers/runc -tags seccomp || fail runc

step "crictl $critools_version"
wrapper crictl "sigs.k8s.io/cri-tools@$critools_version" || fail crictl
CGO_ENABLED=0 gobuild crictl crictl sigs.k8s.io/cri-tools/cmd/crictl \
	-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$critools_version" || fail crictl

step "CNI plugins $cni_version"
wrapper cni "github.com/containernetworking/plugins@$cni_version" || fail "CNI plugins"
for p in main/loopback ipam/host-local; do
	CGO_ENABLED=0 gobuild cni "cni/${p#*/}" "github.com/containernetworking/plugins/plugins/$p" || fail "CNI $p"
done

# Kubernetes replaces its staging modules (k8s.io/api, ...) with ./staging
# paths, which `go get` refuses in a dependency: the wrapper replaces each
# with its published v0.MINOR.PATCH instead.
step "Kubernetes $k8s_version"
staging=0.${k8s_version#v1.}
minor=${staging#0.}
minor=${minor%%.*}
dir=$work/k8s
mkdir -p "$dir"
k8smod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p') || fail "download Kubernetes"
[ -f "$k8smod" ] || fail "download Kubernetes (no go.mod)"
{
	printf 'module bpfgate-k8s-build/k8s\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$k8s_version"
	sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 v'"$staging"'#p' "$k8smod"
	printf ')\n'
} >"$dir/go.mod"
k8scmds=(kubelet kube-apiserver kube-scheduler kubectl)
pkgs=()
for c in "${k8scmds[@]}"; do
	pkgs+=("k8s.io/kubernetes/cmd/$c@$k8s_version")
done
(cd "$dir" && go get "${pkgs[@]}") >>"$log" 2>&1 || fail "resolve Kubernetes"
ld="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for c in "${k8scmds[@]}"; do
	step "  $c"
	CGO_ENABLED=0 gobuild k8s "$c" "k8s.io/kubernetes/cmd/$c" -ldflags "$ld" || fail "$c"
done

# etcd's module has no main package of its own at a path go build can name
# from outside: a two-line main calls etcdmain.
step "etcd $etcd_version"
mkdir -p "$work/etcd"
printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$work/etcd/main.go"
wrapper etcd "go.etcd.io/etcd/server/v3@$etcd_version" || fail etcd
(cd "$work/etcd" && go mod tidy) >>"$log" 2>&1 || fail etcd
CGO_ENABLED=0 gobuild etcd etcd . || fail etcd

# CRI-O in a copy of its own module: its go.sum vouches for pseudo-versions
# the checksum database does not know, which a wrapper module would need.
step "CRI-O $crio_version"
src=$(cd "$work" && go mod download -json "github.com/cri-o/cri-o@$crio_version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') || fail "download CRI-O"
[ -d "$src" ] || fail "download CRI-O (no source)"
cp -r "$src" "$work/crio"
chmod -R u+w "$work/crio"
(cd "$work/crio" && CGO_ENABLED=1 go build -trimpath -tags "containers_image_ostree_stub containers_image_openpgp seccomp exclude_graphdriver_btrfs btrfs_noversion" \
	-o "$tmp/bin/crio" ./cmd/crio) >>"$log" 2>&1 || fail crio
(cd "$work/crio" && gcc -std=c99 -Os -static -o "$tmp/bin/pinns" pinns/src/*.c) >>"$log" 2>&1 || fail pinns

{
	echo "containerd $containerd_version"
	echo "runc $runc_version"
	echo "cri-tools $critools_version"
	echo "cni-plugins $cni_version"
	echo "kubernetes $k8s_version"
	echo "etcd $etcd_version"
	echo "cri-o $crio_version"
	echo "go $(go env GOVERSION), built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start)) s"
} >"$tmp/versions"
chmod -R a+rX "$tmp"
# Builds of other versions (other checkouts may still use them) go once
# unused for a week.
find "$cache" -maxdepth 2 -path "$cache/k8s-*/.complete" -mtime +7 -printf '%h\n' | while read -r old; do
	[ "$old" = "$root" ] || rm -rf "$old"
done
rm -rf "$work"
mv "$tmp" "$root"
touch "$root/.complete"
sed 's/^/k8s-build: /' "$root/versions" >&2
(cd "$root/bin" && find . -type f | sort | sed 's#^\./#k8s-build: built #') >&2
echo "$root"
