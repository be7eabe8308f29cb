#!/usr/bin/env bash
# Makes (once) and prints the path of a Debian trixie root holding real eBPF
# tools nobody here wrote, which the end-to-end tests run under bpfgate's
# built-in profiles (test/tools, docs/profiles.md):
#
#   libbpf-tools  bcc's CO-RE tools (runqlat-libbpf, ...), on libbpf 1.5
#   bpftool       7.5
#   bpftrace      0.23
#   xdp-tools     xdp-filter, xdp-loader and their objects, on libxdp
#
# The root is a debootstrap minbase of suite trixie plus these packages,
# cached under /var/cache/bpfgate-ci in a directory named after a hash of
# the suite, architecture and package list: changing the list here builds a
# new one (and removes the old). A cached root costs nothing to reuse; a
# cold build takes about half a minute from a nearby mirror. The versions
# installed are printed and recorded in ROOT/.bpfgate-versions.
#
# Trixie binaries need trixie's libc: run them through the root's own
# dynamic loader, e.g.
#   ROOT/lib64/ld-linux-x86-64.so.2 --library-path \
#     ROOT/lib/x86_64-linux-gnu:ROOT/usr/lib/x86_64-linux-gnu ROOT/usr/sbin/runqlat-libbpf 1 1
# Everything in the root is world-readable, so an unprivileged sandboxed
# workload can do that (bpfgate run).
#
# Usage: tools-rootfs.sh          build if needed (as root), print the path
#        tools-rootfs.sh --path   print the path if the root is built, else
#                                 say why not and exit 1 (any user)
# BPFGATE_CI_MIRROR overrides the Debian mirror (default deb.debian.org).
set -euo pipefail

suite=trixie
packages=(libbpf-tools bpftool bpftrace xdp-tools)
cache=/var/cache/bpfgate-ci
mirror=${BPFGATE_CI_MIRROR:-http://deb.debian.org/debian}

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
key=$(printf '%s\n' "$suite" "$arch" "${packages[@]}" | sha256sum | cut -c1-12)
rootfs=$cache/tools-$suite-$arch-$key

if [ "${1:-}" = --path ]; then
	if [ ! -e "$rootfs/.complete" ]; then
		echo "no tools root at $rootfs: run scripts/tools-rootfs.sh as root (debootstrap from $mirror)" >&2
		exit 1
	fi
	echo "$rootfs"
	exit 0
fi

if [ -e "$rootfs/.complete" ]; then
	echo "$rootfs"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: building the tools root needs root (debootstrap, chroot)" >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null; then
	echo "$0: debootstrap is not installed (scripts/deps.sh installs it)" >&2
	exit 1
fi
if [ ! -e "/usr/share/debootstrap/scripts/$suite" ]; then
	echo "$0: this debootstrap does not know $suite: install a newer debootstrap" >&2
	exit 1
fi

mkdir -p "$cache"
chmod 755 "$cache"
# One builder at a time; a second one waits and then finds the root made.
exec 9>"$cache/.tools.lock"
flock 9
if [ -e "$rootfs/.complete" ]; then
	echo "$rootfs"
	exit 0
fi

start=$(date +%s)
log=$cache/tools-$suite-$arch.log
tmp=$rootfs.tmp
rm -rf "$tmp"
echo "tools root: debootstrap --variant=minbase $suite from $mirror, then ${packages[*]}" >&2
if ! debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$log" 2>&1; then
	tail -n 20 "$log" >&2
	rm -rf "$tmp"
	exit 1
fi
# apt in the chroot, in a mount namespace of its own: nothing to unmount,
# whatever happens.
if ! unshare --mount --propagation private -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive R="$tmp" bash -euo pipefail -c '
	mount -t proc proc "$R/proc"
	chroot "$R" apt-get update -qq
	chroot "$R" apt-get install -y -qq --no-install-recommends "$@"
	chroot "$R" apt-get clean
	' bash "${packages[@]}" >>"$log" 2>&1; then
	tail -n 20 "$log" >&2
	rm -rf "$tmp"
	exit 1
fi
chroot "$tmp" dpkg-query -W -f='${Package} ${Version}\n' "${packages[@]}" libbpf1 libc6 >"$tmp/.bpfgate-versions"
echo "suite $suite, mirror $mirror, built $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$tmp/.bpfgate-versions"
# The sandboxed workload is an unprivileged host uid: it must be able to
# read every file and search every directory it runs from.
chmod -R a+rX "$tmp/usr" "$tmp/etc/ld.so.cache"
chmod 755 "$tmp"
for old in "$cache"/tools-$suite-$arch-*; do
	[ "$old" = "$rootfs" ] || [ "$old" = "$tmp" ] || rm -rf "$old"
done
mv "$tmp" "$rootfs"
touch "$rootfs/.complete"
sed 's/^/tools root: /' "$rootfs/.bpfgate-versions" >&2
echo "tools root: built in $(($(date +%s) - start)) s" >&2
echo "$rootfs"
