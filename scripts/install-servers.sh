#!/usr/bin/env bash
# Installs, from Debian's packages, the programs that tests and benchmarks start themselves
# (redis-server, redis-cli, redis-sentinel, memcached, PostgreSQL's initdb and postgres,
# openssl for the TLS test's certificates,
# strace for the file store's durability test,
# chromium and chromedriver) when they are missing.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
# Debian puts PostgreSQL's programs in /usr/lib/postgresql/<version>/bin, off PATH; the test
# kit looks there too.
has_postgres() {
    command -v "$1" >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
{ has_postgres initdb && has_postgres postgres; } || missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [ "${1:-}" != "--servers-only" ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
if ((${#missing[@]})) && ! command -v apt-get >/dev/null 2>&1; then
    # Not Debian: say what is missing and go on; the tests that need a program fail, each
    # naming the program and its Debian package, and the others run.
    echo "==> no apt-get here: install these (Debian package names) with your package manager:"
    echo "    ${missing[*]}"
    echo "    tests that need them will fail, naming what is missing"
    missing=()
fi
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    install() { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
    install || { "${sudo[@]}" apt-get update -qq && install; }
fi
