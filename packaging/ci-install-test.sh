#!/usr/bin/env bash
# Builds the .debs and installs them into a clean Debian root with dpkg, then
# runs the installed bpfgate there: `bpfgate version` and `bpfgate check
# --profile demo`; then bpfgate-k8s through `bpfgate k8s` (its Depends
# enforced, its owner and mode accepted by bpfgate's check), and removes the
# packages again.
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
mapfile -t debs < <("$root/packaging/build-deb.sh" "$work/dist" | tail -n2)
deb=${debs[0]} k8sdeb=${debs[1]}
for d in "$deb" "$k8sdeb"; do
	echo "package: $d" >&2
	dpkg-deb --info "$d" >&2
done
case "$(basename "$deb")/$(basename "$k8sdeb")" in
bpfgate_*.deb/bpfgate-k8s_*.deb) ;;
*) echo "build-deb.sh printed $deb and $k8sdeb, want bpfgate's and bpfgate-k8s's .deb" >&2; exit 1 ;;
esac

cp -a "$rootfs" "$work/root"
cp "$deb" "$work/root/tmp/bpfgate.deb"
cp "$k8sdeb" "$work/root/tmp/bpfgate-k8s.deb"
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
	# Without bpfgate-k8s, bpfgate k8s says what is missing.
	if out=$(inroot bpfgate k8s --help 2>&1); then
		echo "bpfgate k8s --help without bpfgate-k8s succeeded: $out" >&2; exit 1
	fi
	grep -q "bpfgate-k8s, which is neither next to this binary nor in PATH" <<<"$out" ||
		{ echo "bpfgate k8s without bpfgate-k8s: $out" >&2; exit 1; }

	# bpfgate-k8s depends on bpfgate of its version: without it dpkg
	# leaves it unconfigured.
	inroot dpkg -r bpfgate
	if inroot dpkg -i /tmp/bpfgate-k8s.deb >/dev/null 2>&1; then
		echo "dpkg -i bpfgate-k8s without bpfgate succeeded: its Depends is missing" >&2; exit 1
	fi
	[ "$(inroot dpkg-query -W -f="\${Status}" bpfgate-k8s)" != "install ok installed" ]
	inroot dpkg -i /tmp/bpfgate.deb /tmp/bpfgate-k8s.deb
	for p in bpfgate bpfgate-k8s; do
		[ "$(inroot dpkg-query -W -f="\${Status}" $p)" = "install ok installed" ] ||
			{ echo "$p is not installed" >&2; exit 1; }
	done
	[ "$(stat -c "%U %a" "$R/usr/bin/bpfgate-k8s")" = "root 755" ]
	[ -f "$R/usr/share/man/man1/bpfgate-k8s-dra.1.gz" ] || { echo "bpfgate-k8s has no man page for k8s dra" >&2; exit 1; }
	# bpfgate finds it next to itself, accepts its owner and mode, and
	# hands over: the real k8s commands answer.
	out=$(inroot bpfgate k8s --help)
	for w in device-plugin dra nri; do
		grep -q "^  $w " <<<"$out" || { echo "bpfgate k8s --help does not list $w:" >&2; echo "$out" >&2; exit 1; }
	done
	out=$(inroot bpfgate k8s dra device-classes)
	echo "$out"
	grep -q "^  name: bpfgate-demo$" <<<"$out" || { echo "bpfgate k8s dra device-classes: no bpfgate-demo class" >&2; exit 1; }
	# bpfgate cannot go while bpfgate-k8s needs it.
	if inroot dpkg -r bpfgate >/dev/null 2>&1; then
		echo "dpkg -r bpfgate succeeded with bpfgate-k8s installed" >&2; exit 1
	fi
	inroot dpkg -r bpfgate-k8s bpfgate
	for f in /usr/bin/bpfgate /usr/bin/bpfgate-k8s; do
		[ ! -e "$R$f" ] || { echo "dpkg -r left $f" >&2; exit 1; }
	done
'
echo "the .debs install into a clean $suite root, run, and remove cleanly"
