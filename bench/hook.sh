#!/usr/bin/env bash
# What bpfgate's OCI hook adds to a container start, alone: `runc run` of a
# busybox bundle (a user namespace of its own, CAP_BPF, /bin/true) without a
# hook, with /bin/true as its createRuntime hook (any hook's floor: runc's
# fork, exec and wait), with `bpfgate version` (starting the bpfgate binary)
# and with `bpfgate oci-hook --profile demo` (the whole hook: policy,
# checks, the helper in the container's namespaces, the delegated bpffs),
# interleaved in one run. Needs root, runc, jq and busybox-static.
#   bash bench/hook.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
n=${1:-100}
out=$(mktemp -d /tmp/bpfgate-bench-XXXXXX)
chmod 755 "$out"
trap 'rm -rf "$out"' EXIT
go build -o "$out/bpfgate" ./cmd/bpfgate
go build -o "$out/compare" ./bench/compare
mkdir -p "$out/rootfs/bin" "$out/rootfs/proc" "$out/rootfs/sys" "$out/rootfs/dev"
cp "$(command -v busybox)" "$out/rootfs/bin/busybox"
ln -s busybox "$out/rootfs/bin/true"
# bundle NAME HOOKS: a bundle whose config.json has these hooks.
bundle() {
	mkdir -p "$out/$1"
	(cd "$out/$1" && runc spec)
	jq --arg root "$out/rootfs" --argjson hooks "$2" '
		.root = {path: $root, readonly: true} | .process.terminal = false | .process.args = ["/bin/true"]
		| .process.capabilities |= with_entries(.value += ["CAP_BPF"])
		| .mounts |= map(select(.type != "cgroup"))
		| .linux.namespaces += [{type: "user"}]
		| .linux.uidMappings = [{containerID: 0, hostID: 1879048192, size: 65536}]
		| .linux.gidMappings = .linux.uidMappings
		| .hooks = $hooks' "$out/$1/config.json" >"$out/$1/config.json.new"
	mv "$out/$1/config.json.new" "$out/$1/config.json"
}
hook() { printf '{"createRuntime":[{"path":"%s","args":%s}]}' "$1" "$2"; }
bundle plain '{}'
bundle true "$(hook /bin/true '["true"]')"
bundle start "$(hook "$out/bpfgate" '["bpfgate","version"]')"
bundle hook "$(hook "$out/bpfgate" '["bpfgate","oci-hook","--profile","demo"]')"
id=bpfgate-bench-$$
"$out/compare" -n "$n" "runc run --bundle $out/plain $id-1" "runc run --bundle $out/true $id-2" \
	"runc run --bundle $out/start $id-3" "runc run --bundle $out/hook $id-4"
