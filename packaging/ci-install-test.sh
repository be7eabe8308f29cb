#!/usr/bin/env bash
# Builds the .deb and installs it into a clean Debian root with dpkg, then
# runs the installed bpfgate there: `bpfgate version` and `bpfgate check
# --profile demo`, and removes the package again.
#
# The clean root is a minimal Debian (debootstrap --variant=minbase) of the
# host's release, so dpkg really resolves the package's Depends against a
# stock libc6 and the binary runs on that libc, not the build machine's
# files. The pristine rootfs is cached under /var/cache/bpfgate-ci (about
# 200 MB, built once in ~30 s) and copied for every run, so a run never sees
# what an earlier one installed. Needs root. BPFGATE_CI_MIRROR overrides the
# Debian mirror, which is otherwise the one the host's apt uses.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=/var/cache/bpfgate-ci

if [ "$(id -u)" -ne 0 ]; then
	echo "$0: needs root (debootstrap, chroot, dpkg -i)" >&2
	exit 1
fi
. /etc/os-release
suite=${VERSION_CODENAME:?/etc/os-release has no VERSION_CODENAME}
arch=$(dpkg --print-architecture)

# The mirror of the host's main archive for $suite, from its apt sources
# (deb822 .sources files, then one-line sources.list).
host_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		awk -v s="$suite" '
			function flush() { if (ok && uri != "" && found == "") found = uri; uri = ""; ok = 0 }
			/^[ \t]*$/ { flush(); next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
			END { flush(); if (found != "") print found }' "$f"
	done
	if [ -e /etc/apt/sources.list ]; then
		awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }' /etc/apt/sources.list
	fi
}

rootfs=$cache/rootfs-$suite-$arch
if [ ! -e "$rootfs/.complete" ]; then
	if ! command -v debootstrap >/dev/null; then
		apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	mirror=${BPFGATE_CI_MIRROR:-$(host_mirror | head -n1)}
	if [ -z "$mirror" ]; then
		echo "$0: no apt source for $suite on this host: set BPFGATE_CI_MIRROR to a Debian mirror" >&2
		exit 1
	fi
	echo "clean root: debootstrap --variant=minbase $suite from $mirror into $rootfs" >&2
	rm -rf "$rootfs"
	mkdir -p "$cache"
	if ! debootstrap --variant=minbase "$suite" "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1; then
		tail -n 20 "$cache/debootstrap.log" >&2
		rm -rf "$rootfs.tmp"
		exit 1
	fi
	# Only a finished rootfs is ever reused.
	mv "$rootfs.tmp" "$rootfs"
	touch "$rootfs/.complete"
fi

work=$(mktemp -d /var/tmp/bpfgate-ci.XXXXXX)
trap 'rm -rf "$work"' EXIT
deb=$("$root/packaging/build-deb.sh" "$work/dist" | tail -n1)
echo "package: $deb" >&2
dpkg-deb --info "$deb" >&2

cp -a "$rootfs" "$work/root"
cp "$deb" "$work/root/tmp/bpfgate.deb"
# What the installed binary must report: the commit of this checkout when
# Go could stamp it (a clone, whose .git is a directory).
want_commit=
if [ -d "$root/.git" ]; then
	want_commit=$(git -C "$root" rev-parse HEAD)
fi

# The mounts exist only in this private mount namespace: nothing to undo,
# whatever happens inside.
unshare --mount --propagation private -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	R="$work/root" WANT_COMMIT="$want_commit" bash -euo pipefail -c '
	mount -t proc proc "$R/proc"
	mount -t sysfs -o ro sysfs "$R/sys"
	inroot() { chroot "$R" "$@"; }
	inroot dpkg -i /tmp/bpfgate.deb
	[ "$(inroot dpkg-query -W -f="\${Status}" bpfgate)" = "install ok installed" ]
	for f in /usr/bin/bpfgate /usr/share/man/man1/bpfgate.1.gz /usr/share/man/man1/bpfgate-check.1.gz \
		/usr/share/bash-completion/completions/bpfgate /usr/share/zsh/vendor-completions/_bpfgate \
		/usr/share/fish/vendor_completions.d/bpfgate.fish /usr/lib/systemd/system/bpfgate-preload.service \
		/usr/share/doc/bpfgate/README.md /usr/share/doc/bpfgate/docs/preload.md; do
		[ -f "$R$f" ] || { echo "installed package has no $f" >&2; exit 1; }
	done
	inroot bpfgate version
	json=$(inroot bpfgate version --json)
	if [ -n "$WANT_COMMIT" ] && ! grep -Eq "\"commit\": ?\"$WANT_COMMIT\"" <<<"$json"; then
		echo "bpfgate version does not report commit $WANT_COMMIT:" >&2
		echo "$json" >&2
		exit 1
	fi
	out=$(inroot bpfgate check --profile demo)
	echo "$out"
	want="delegate_cmds=map_create:prog_load:btf_load,delegate_maps=hash:array,delegate_progs=socket_filter,delegate_attachs=cgroup_inet_ingress"
	[ "$out" = "$want" ] || { echo "bpfgate check --profile demo printed $out, want $want" >&2; exit 1; }
	inroot dpkg -r bpfgate
	[ ! -e "$R/usr/bin/bpfgate" ] || { echo "dpkg -r left /usr/bin/bpfgate" >&2; exit 1; }
'
echo "the .deb installs into a clean $suite root, runs, and removes cleanly"
