#!/usr/bin/env bash
# Runs every check and test. As root on Linux 6.9+ this includes the
# end-to-end tests against the real kernel; under CI=true nothing may skip.
# It first installs the packages the tests need (scripts/deps.sh) and ends
# with the list of skipped tests and a line "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH

./scripts/deps.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
CGO_ENABLED=0 go vet ./...
# bpfgate-k8s: the same program with the Kubernetes components (-tags k8s).
go vet -tags k8s ./cmd/bpfgate

testsum=$(mktemp -d)
trap 'rm -rf "$testsum"' EXIT
go build -o "$testsum/testsum" ./internal/cmd/testsum
{
	status=0
	go test -json -count=1 ./... || status=1
	# The k8s commands and the JSON conventions in the -tags k8s build.
	go test -json -count=1 -tags k8s -run 'K8s|JSON' ./cmd/bpfgate || status=1
	# The helpers honour fault injection only in test builds (tag bpfgate_faults).
	go test -json -count=1 -tags bpfgate_faults -run 'Fault' ./launch || status=1
	# Without cgo there are no C helpers: such a build must say so, not run
	# workloads unsandboxed.
	CGO_ENABLED=0 go test -json -count=1 -run 'TestWithoutCgo' ./launch || status=1
	# A short run of every fuzzer of outside input on top of its seed corpus
	# (about 35 s in all). go test takes one fuzz target per run. Budgets are
	# counts, not durations: with a duration, Go 1.26's fuzz coordinator can fail
	# a clean run with "context deadline exceeded" (go.dev/issue/75804).
	while read -r pkg target execs; do
		echo "fuzz $pkg $target $execs"
		go test -json -run='^$' -fuzz="^${target}\$" -fuzztime="$execs" -fuzzminimizetime=100x "$pkg" </dev/null || status=1
	done <<'EOF'
./delegate FuzzParseMask 50000x
./profile FuzzLoadProfiles 20000x
./ocihook FuzzReadState 50000x
./ocihook FuzzLoadBundle 20000x
./ocihook FuzzSeccompAllowBPF 30000x
./preload FuzzReadFile 20000x
./launch FuzzParseIDMap 100000x
./delegate FuzzParseCaps 100000x
./record FuzzDecode 100000x
./internal/seccomp FuzzFilter 100000x
./ocihook FuzzPrecreate 20000x
./k8s/nri FuzzLocalhostSeccomp 30000x
./audit FuzzDecode 100000x
EOF
	exit $status
} | "$testsum/testsum"
