#!/usr/bin/env bash
# Installs the Debian packages the tests need. Quick and offline when they
# are all there; as root it installs what is missing (apt-get update first);
# otherwise it says in one line what is missing and leaves the tests to skip
# (or, under CI=true, fails).
set -euo pipefail

# nsenter (util-linux) mounts into running processes; git lists files for
# gofmt; gcc and libbpf-dev build the libbpf test workload; iproute2 makes the
# veth pairs the XDP and TCX tests attach to; the container tests run real
# podman with runc, and with crun (the other runtime podman ships with), on
# a busybox image; debootstrap makes the clean root CI installs the .deb
# into; conmon is CRI-O's container monitor (test/k8s runs CRI-O, which is
# built, not packaged, and does not build conmon).
packages=(util-linux git ca-certificates gcc libc6-dev iproute2 debootstrap
	podman runc crun busybox-static netavark aardvark-dns iptables conmon)
# libbpf with token support (1.4+) and a bpftool built on it come from
# bookworm-backports: the end-to-end tests run unmodified libbpf workloads.
declare -A minimum=([libbpf-dev]=1:1.4 [bpftool]=7.4)

if ! command -v dpkg-query >/dev/null; then
	echo "deps: not a Debian system: install by hand ${packages[*]} ${!minimum[*]} (libbpf 1.4+, bpftool 7.4+)"
	exit 0
fi

# The real third-party eBPF tools the profile tests run (Debian trixie's
# libbpf-tools, bpftool, bpftrace, xdp-tools) live in a cached debootstrap
# root (scripts/tools-rootfs.sh): built as root, quick once cached. Without
# it those tests skip, and under CI=true fail.
tools_root() {
	[ "$(id -u)" -eq 0 ] || return 0
	if ! "$(dirname "$0")/tools-rootfs.sh" >/dev/null; then
		echo "deps: could not build the tools root (scripts/tools-rootfs.sh); the tests that run real tools skip"
		[ "${CI:-}" = true ] && exit 1
	fi
	return 0
}

# The Kubernetes and container runtime binaries test/k8s runs (containerd,
# runc, crictl, kubelet, API server, etcd, CRI-O) at pinned versions, built
# from the Go module proxy (scripts/k8s-build.sh): about 10 minutes cold,
# cached under /var/cache/bpfgate-ci afterwards.
k8s_bins() {
	[ "$(id -u)" -eq 0 ] || return 0
	if ! "$(dirname "$0")/k8s-build.sh" >/dev/null; then
		echo "deps: could not build the Kubernetes components (scripts/k8s-build.sh); the test/k8s tests skip"
		[ "${CI:-}" = true ] && exit 1
	fi
	return 0
}

# QEMU and the Debian kernels test/kernels boots (scripts/kernels.sh), at
# pinned versions: about 20 s cold, cached under /var/cache/bpfgate-ci.
kernels() {
	[ "$(id -u)" -eq 0 ] || return 0
	if ! "$(dirname "$0")/kernels.sh" >/dev/null; then
		echo "deps: could not install QEMU or the kernels (scripts/kernels.sh); the test/kernels tests skip"
		[ "${CI:-}" = true ] && exit 1
	fi
	return 0
}

installed() { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }

missing=()
for p in "${packages[@]}"; do
	[ -n "$(installed "$p")" ] || missing+=("$p")
done
newer=()
for p in "${!minimum[@]}"; do
	v=$(installed "$p")
	if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge "${minimum[$p]}"; then
		newer+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ] && [ ${#newer[@]} -eq 0 ]; then
	tools_root
	k8s_bins
	kernels
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${missing[*]} ${newer[*]} (run scripts/deps.sh as root; libbpf-dev and bpftool from bookworm-backports); the tests that need them skip"
	[ "${CI:-}" = true ] && exit 1
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ ${#newer[@]} -gt 0 ] && grep -q bookworm /etc/os-release && [ ! -e /etc/apt/sources.list.d/bookworm-backports.sources ]; then
	cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
echo "deps: installing ${missing[*]} ${newer[*]}"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#newer[@]} -gt 0 ]; then
	backports=()
	[ -e /etc/apt/sources.list.d/bookworm-backports.sources ] && backports=(-t bookworm-backports)
	apt-get install -y -qq --no-install-recommends "${backports[@]}" "${newer[@]}" >/dev/null
fi
tools_root
k8s_bins
kernels
