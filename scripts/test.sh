#!/usr/bin/env bash
# The whole test suite: the README's "run the tests" command, and what .ci/run runs.
#
# Tests start their own redis-server, Redis Cluster, memcached and PostgreSQL processes on free loopback
# ports (see crates/cloakroom-testkit), and headless Chromium for the browser test; this
# script installs the programs from Debian's packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-servers.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked --no-fail-fast 2>&1 | tee "$log" || status=$?

# One closing line for the whole run: cargo prints a result per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "\nTotal: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
