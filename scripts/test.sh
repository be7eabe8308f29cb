#!/usr/bin/env bash
# Runs every check and test. As root on Linux 6.9+ this includes the
# end-to-end tests against the real kernel; under CI=true they may not skip.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -count=1 ./...
# The helpers honour fault injection only in test builds (tag bpfgate_faults).
go test -count=1 -tags bpfgate_faults -run 'Fault' ./launch
# Without cgo there are no C helpers: such a build must say so, not run
# workloads unsandboxed.
CGO_ENABLED=0 go vet ./...
CGO_ENABLED=0 go test -count=1 -run 'TestWithoutCgo' ./launch
# A short run of every fuzzer of outside input on top of its seed corpus
# (about 35 s in all). go test takes one fuzz target per run. Budgets are
# counts, not durations: with a duration, Go 1.26's fuzz coordinator can fail
# a clean run with "context deadline exceeded" (go.dev/issue/75804).
while read -r pkg target execs; do
	go test -run='^$' -fuzz="^${target}\$" -fuzztime="$execs" -fuzzminimizetime=100x "$pkg" </dev/null
done <<'EOF'
./delegate FuzzParseMask 50000x
./delegate FuzzLoadProfiles 20000x
./ocihook FuzzReadState 50000x
./ocihook FuzzLoadBundle 20000x
./ocihook FuzzSeccompAllowBPF 30000x
./preload FuzzReadFile 20000x
./launch FuzzParseIDMap 100000x
./launch FuzzParseCaps 100000x
EOF
