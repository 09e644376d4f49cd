#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 30s):
#   make fuzz FUZZTIME=5m
# `go test` runs only the seed corpora; this explores (minimizing a new input
# is capped at 5s: some targets start a real worker per input). A finding is saved by
# go under the package's testdata/fuzz/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-30s}"
failed=0
for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		echo "== $pkg $t ($FUZZTIME)"
		if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s "$pkg"; then
			failed=1
		fi
	done
done
exit $failed
