#!/usr/bin/env bash
# A long run of the consistency checker on every store: `scripts/soak.sh [SECONDS]` (default
# 600) runs each store's checker test for that long instead of a few seconds, faults included
# (killed connections, flushes, pauses, restarts, failovers; PostgreSQL restarted), and prints each report: the
# operations checked, how many were indeterminate, and the stalest read seen.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh --servers-only
export CLOAKROOM_SOAK_SECS="${1:-600}"
run() { cargo test --release --locked --all-features -p "$1" --test "$2" -- --nocapture --test-threads 1 "${@:3}"; }
run cloakroom-redis consistency
run cloakroom-redis topologies sentinel
run cloakroom-memcache memcache three_instances
run cloakroom-fs fs three_instances
run cloakroom-sql postgres three_instances
run cloakroom-sql sqlite three_instances
run cloakroom-testkit consistency memory_store
