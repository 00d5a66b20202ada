#!/usr/bin/env bash
# The side-by-side load comparison with tower-sessions (memory store, Redis, PostgreSQL,
# SQLite), each app on one Tokio worker thread and on one per core, on this machine, in one
# run. Arguments go to the load command: --seconds, --rounds, --connections, --workers N (0:
# one per core), --only memory|redis|postgres|sqlite, --scenario NAME (the scenarios whose name
# starts with NAME; `many` adds requests over 10,000 and a million sessions).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh --servers-only
exec cargo run --release --locked -p cloakroom-bench --bin load -- "$@"
