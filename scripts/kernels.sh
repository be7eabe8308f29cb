#!/usr/bin/env bash
# Installs QEMU and unpacks (once) the Debian kernels test/kernels boots,
# every one at a pinned version with a pinned sha256, and prints the path of
# the cache:
#
#   name   package                                   version              suite
#   6.1    linux-image-6.1.0-50-amd64-unsigned       6.1.176-1            bookworm
#   6.12   linux-image-6.12.95+deb12-amd64-unsigned  6.12.95-1~bpo12+1    bookworm-backports
#   qemu-system-x86 1:10.0.2+ds-2+deb13u1~bpo12+1 (bookworm-backports; 7.2's TCG crashed)
#
# Why these: 6.1 is the kernel before BPF tokens (6.9) that Debian 12 ships,
# where bpfgate must refuse clearly; 6.12 has tokens but no token info
# (6.17) and loads BPF LSM programs, which this host's kernel refuses.
#
# The kernels land in /var/cache/bpfgate-ci/kernels-KEY/NAME/{vmlinuz,config,
# release}, KEY being a hash of this script (and so of every pin in it):
# changing a pin unpacks a new directory, and caches no run as root has used
# for a week are removed. A cold run takes about 20 s; a cached one returns
# at once. ROOT/versions records what was unpacked.
#
# Debian's archive serves only current versions. When a pin is gone, this
# script fails and says how to move it: look up the current version
# (apt-cache madison PACKAGE), download it (apt-get download PACKAGE=VERSION),
# and put the package, version and `sha256sum` of the .deb here.
#
# Usage: kernels.sh          install and unpack if needed (as root), print the path
#        kernels.sh --path   print the path if it is ready, else say why
#                            not and exit 1 (any user)
set -euo pipefail

qemu_version=1:10.0.2+ds-2+deb13u1~bpo12+1
# name package version sha256 (of the .deb)
kernels=(
	"6.1 linux-image-6.1.0-50-amd64-unsigned 6.1.176-1 439422e41d2dbb840b60b81e3bf5e5955bfa56b7a8c268aec83c9ff882d421e6"
	"6.12 linux-image-6.12.95+deb12-amd64-unsigned 6.12.95-1~bpo12+1 d1bfac79e7318f67e4b2dc13698090d822af87d9e2db79b18db53c36b7e8eddd"
)

# Modules the tests load (with what they depend on): everything else they
# need is built in. veth: the sandbox's network tests; ext4: a hostile
# peer's non-BPF filesystem context.
modules=(veth ext4)

cache=/var/cache/bpfgate-ci
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
key=$(sha256sum "$self" | cut -c1-12)
root=$cache/kernels-$key

qemu_ok() {
	[ "$(dpkg-query -W -f='${Status} ${Version}' qemu-system-x86 2>/dev/null)" = "install ok installed $qemu_version" ]
}

if [ -e "$root/.complete" ] && qemu_ok; then
	# A use as root keeps the cache from being pruned (below).
	[ "$(id -u)" -ne 0 ] || touch "$root/.complete"
	echo "$root"
	exit 0
fi
if [ "${1:-}" = --path ]; then
	if [ -e "$root/.complete" ]; then
		echo "qemu-system-x86 $qemu_version is not installed: run scripts/kernels.sh as root" >&2
	else
		echo "no kernels at $root: run scripts/kernels.sh as root (about 20 s, Debian archive)" >&2
	fi
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: installing QEMU and the kernels needs root (apt packages, $cache)" >&2
	exit 1
fi

mkdir -p "$cache"
chmod 755 "$cache"
# One at a time; a second one waits and then finds the work done.
exec 9>"$cache/.kernels.lock"
flock 9

export DEBIAN_FRONTEND=noninteractive
updated=
update() {
	[ -n "$updated" ] && return 0
	apt-get update -qq
	updated=1
}

if ! command -v xz >/dev/null; then
	update
	apt-get install -y -qq --no-install-recommends xz-utils >/dev/null
fi
if ! qemu_ok; then
	if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
		cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
	fi
	echo "kernels: installing qemu-system-x86 $qemu_version" >&2
	update
	if ! apt-get install -y -qq --no-install-recommends -t bookworm-backports \
		"qemu-system-x86=$qemu_version" >/dev/null; then
		echo "kernels: qemu-system-x86 $qemu_version is not in the archive any more." >&2
		echo "  Move the pin: apt-cache madison qemu-system-x86 lists what is there (take a bookworm-backports" >&2
		echo "  10.x), then set qemu_version in $self." >&2
		exit 1
	fi
fi

if [ -e "$root/.complete" ]; then
	echo "$root"
	exit 0
fi

# add_module MODULES NAME OUT: puts module NAME (from the package's tree
# MODULES), uncompressed, in OUT after what it depends on (read from its
# .modinfo: the package has no modules.dep), and lists it in OUT/order.
add_module() {
	local tree=$1 m=$2 out=$3 f deps d
	grep -qx "$m.ko" "$out/order" && return 0
	f=$(find "$tree" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "${m//_/-}.ko" -o -name "${m//_/-}.ko.xz" \) | head -n 1)
	if [ -z "$f" ]; then
		echo "kernels: module $m is not in the package" >&2
		exit 1
	fi
	case $f in
	*.xz) xz -dc "$f" >"$out/$m.ko" ;;
	*) cp "$f" "$out/$m.ko" ;;
	esac
	deps=$(tr '\0' '\n' <"$out/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
	for d in $deps; do
		add_module "$tree" "$d" "$out"
	done
	echo "$m.ko" >>"$out/order"
}

tmp=$root.tmp
rm -rf "$tmp"
mkdir -p "$tmp/debs"
: >"$tmp/versions"
echo "qemu-system-x86 $qemu_version" >>"$tmp/versions"
for k in "${kernels[@]}"; do
	read -r name pkg version sum <<<"$k"
	deb=$tmp/debs/${pkg}_${version}.deb
	if ! (cd "$tmp/debs" && apt-get download -qq "$pkg=$version") 2>"$tmp/download.log"; then
		update
		if ! (cd "$tmp/debs" && apt-get download -qq "$pkg=$version") 2>"$tmp/download.log"; then
			cat "$tmp/download.log" >&2
			echo "kernels: $pkg $version ($name) is not in the archive any more." >&2
			echo "  Move the pin: apt-cache madison $pkg (or apt-cache search --names-only" >&2
			echo "  '^linux-image-$name.*-amd64-unsigned' for a newer ABI), apt-get download PACKAGE=VERSION," >&2
			echo "  sha256sum the .deb, and set package, version and sha256 for $name in $self." >&2
			rm -rf "$tmp"
			exit 1
		fi
	fi
	mv "$tmp/debs/"*.deb "$deb"
	got=$(sha256sum "$deb" | cut -d' ' -f1)
	if [ "$got" != "$sum" ]; then
		echo "kernels: $pkg $version: sha256 $got, pinned $sum." >&2
		echo "  The archive changed the package under the same version: check why before you pin the new sum in $self." >&2
		rm -rf "$tmp"
		exit 1
	fi
	# The kernel image, its config, and the few modules above: every
	# feature the tests need (BPF, BTF, user namespaces, bpffs, cgroup2, the
	# 8250 console) is built in (test/kernels checks the config).
	mkdir -p "$tmp/$name/modules" "$tmp/x"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' './boot/config-*' './lib/modules/*'
	: >"$tmp/$name/modules/order"
	for m in "${modules[@]}"; do
		add_module "$tmp/x/lib/modules" "$m" "$tmp/$name/modules"
	done
	mv "$tmp/x/boot/"vmlinuz-* "$tmp/$name/vmlinuz"
	release=$(basename "$tmp/x/boot/"config-*)
	mv "$tmp/x/boot/$release" "$tmp/$name/config"
	echo "${release#config-}" >"$tmp/$name/release"
	rm -rf "$tmp/x" "$deb"
	echo "$name $pkg $version sha256:$sum" >>"$tmp/versions"
done
rm -rf "$tmp/debs" "$tmp/download.log"
touch "$tmp/.complete"
rm -rf "$root"
mv "$tmp" "$root"

# Caches of older pins that no run as root has used for a week.
find "$cache" -maxdepth 2 -path "$cache/kernels-*/.complete" -mtime +7 -printf '%h\n' | while read -r old; do
	[ "$old" = "$root" ] || rm -rf "$old"
done
sed 's/^/kernels: /' "$root/versions" >&2
echo "$root"
