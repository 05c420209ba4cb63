#!/usr/bin/env bash
# The whole test suite. Installs what the tests need on a fresh Debian
# machine first, so that it passes there by itself; `.ci/run` calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

need_apt=()
# The browser test of the invitation page (tests/api/browser.rs) drives
# Debian's Chromium headless through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  need_apt+=(chromium chromium-driver)
fi
# Every integration test that starts a server runs on SQLite and again on a
# real PostgreSQL server (`on_both_backends!` in tests/api/main.rs).
if [ -z "${TEST_DATABASE_URL:-}" ] && [ -z "$(pg_bin)" ]; then
  need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# A private, throwaway PostgreSQL cluster on a free loopback port, unless
# the caller named a server in TEST_DATABASE_URL.
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  bin=$(pg_bin)
  pgdata=$(mktemp -d)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres "$pgdata"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$bin/initdb" -D "$pgdata/data" -A trust -U cedargate >/dev/null
  "${as_pg[@]}" "$bin/pg_ctl" -D "$pgdata/data" -l "$pgdata/log" -w \
    -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off" start >/dev/null
  trap '"${as_pg[@]}" "$bin/pg_ctl" -D "$pgdata/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdata"' EXIT
  export TEST_DATABASE_URL="postgres://cedargate@127.0.0.1:$port/postgres"
fi

# `cedargate prove` and its tests (tests/api/prove.rs) need the SMT solver
# cvc5 1.3.1. No registry ships its executable; PyPI's wheel ships the
# library, which tools/cvc5 answers for, from a private virtualenv under
# target/ (Debian's Python refuses `pip install` outside one). The prove
# tests find tools/cvc5 through that virtualenv; CVC5 is deliberately not
# exported, so that the servers of the other tests keep their reload gate
# free of proofs (seconds per changed policy set), as without a solver.
venv=target/cvc5-venv
if ! env -u CVC5_PYTHON tools/cvc5 --version 2>/dev/null | grep -q 'version 1\.3\.1'; then
  echo "--- installing cvc5 1.3.1 (PyPI) into $venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cvc5==1.3.1'
fi

# Benches are compiled by clippy --all-targets but not run here: they
# build stores of up to a million entities (`cargo bench`, bench/load.py).
# A plain `cargo test` ignores the tests that need PostgreSQL or Chromium,
# with the reason; here they all run, and a missing service fails them.
cargo test --locked --lib --bins --tests -- --include-ignored
