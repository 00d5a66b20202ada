#!/usr/bin/env bash
# The whole test suite: the README's "run the tests" command, and what .ci/run runs.
# Tests that need a server start their own on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked 2>&1 | tee "$log" || status=$?

# One closing line for the whole run: cargo prints a result per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "\nTotal: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
