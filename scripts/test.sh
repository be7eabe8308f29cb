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
# Without cgo there are no C helpers: such a build must say so, not run
# workloads unsandboxed.
CGO_ENABLED=0 go vet ./...
CGO_ENABLED=0 go test -count=1 -run 'TestWithoutCgo' ./launch
# A short run of the parser fuzzer on top of its seed corpus.
go test -run='^$' -fuzz=FuzzParseMask -fuzztime=10s ./delegate
