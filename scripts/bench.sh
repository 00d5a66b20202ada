#!/usr/bin/env bash
# The side-by-side load comparison with tower-sessions (memory store and Redis), on this
# machine, in one run. Arguments go to the load command: --seconds, --rounds, --connections,
# --only memory|redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-servers.sh --servers-only
exec cargo run --release --locked -p cloakroom-bench --bin load -- "$@"
