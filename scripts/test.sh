#!/usr/bin/env bash
# The whole test suite: the README's "run the tests" command, and what .ci/run runs.
# Tests that need a server start their own on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --all-features --locked
