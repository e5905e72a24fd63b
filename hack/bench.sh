#!/usr/bin/env bash
# `make bench`: Go benchmarks, then lab measurements. Every result is also
# printed as one name=value line (the lines issues name) so progress can be
# read and compared across commits.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go benchmarks"
go test -run '^$' -bench . -benchmem -count 1 ./... | grep -E '^(Benchmark|ok|FAIL)' || true

echo "== lab measurements"
go run ./e2e/cmd/bench "$@"
