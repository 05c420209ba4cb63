#!/usr/bin/env bash
# The API contract, checked by generated requests: schemathesis reads the
# served /openapi.json and sends valid and invalid requests to every
# operation of a private sidecar (on 127.0.0.1, a temporary SQLite
# database); any 5xx, or a status, content type or body the document does
# not declare for that operation, fails the run. `.ci/run` calls it after
# tests/run.sh. SCHEMATHESIS_MAX_EXAMPLES (default 30) bounds the examples
# per operation; SCHEMATHESIS_SEED replays a run.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-30}
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance

# Schemathesis 4, 4.32 or newer (the CLI below is its current one): the one on
# PATH, else a private virtualenv under target/ (Debian's Python refuses
# `pip install` outside one).
new_enough() {
  local major minor
  read -r major minor < <("$1" --version 2>/dev/null |
    sed -n 's/.*version \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p') || return 1
  [ "$major" -eq 4 ] && [ "$minor" -ge 32 ]
}
st=""
if command -v schemathesis >/dev/null 2>&1 && new_enough schemathesis; then
  st=schemathesis
else
  # Absolute: schemathesis runs from a temporary directory (below).
  venv="$PWD/target/schemathesis-venv"
  if ! [ -x "$venv/bin/schemathesis" ] || ! new_enough "$venv/bin/schemathesis"; then
    echo "--- installing schemathesis into $venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5'
  fi
  st="$venv/bin/schemathesis"
fi

cargo build --quiet --locked --bin cedargate
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug/cedargate"

tmp=$(mktemp -d)
server=""
stop() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap stop EXIT

db="sqlite://$tmp/db"
admin=schemathesis-admin@cedargate.example
token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# A system administrator acts in every administrative call, and the
# organization `acme` gives the per-organization operations something to
# act on (the config below fixes `{org}` to it).
"$bin" admin create --email "$admin" --database-url "$db" --mail-url "$tmp/outbox" >/dev/null
"$bin" org create --id acme --name "Acme Energy" --owner-email olivia@acme.example \
  --owner-first-name Olivia --owner-last-name Owner --database-url "$db" --mail-url "$tmp/outbox" >/dev/null

CEDARGATE_API_TOKEN="$token" "$bin" serve --bind "127.0.0.1:$port" --database-url "$db" \
  --mail-url "$tmp/outbox" --watch false --consistency-wait-ms 20 >"$tmp/server.log" 2>&1 &
server=$!

ready() {
  python3 - "$base/readyz" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
for _ in $(seq 1 120); do
  ready && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$tmp/server.log" >&2
    echo "schemathesis: FAILED: the sidecar exited before it was ready" >&2
    exit 1
  fi
  sleep 0.5
done
if ! ready; then
  cat "$tmp/server.log" >&2
  echo "schemathesis: FAILED: the sidecar was not ready within 60 s" >&2
  exit 1
fi

# A decision asking for a store revision that does not exist yet (any
# generated token beyond the few this run writes) is answered with the
# documented 503 revision_not_reached; any other 5xx still fails.
cat >"$tmp/schemathesis.toml" <<'EOF'
[parameters]
"path.org" = "acme"

[[operations]]
include-path-regex = "^/(v1/is_authorized|v1/plan|access/v1/)"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
EOF

seed=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then seed=(--seed "$SCHEMATHESIS_SEED"); fi

echo "--- schemathesis $("$st" --version | sed 's/.*version //') against $base ($max_examples examples per operation)"
# Proxies are dropped so that every request goes to the loopback sidecar.
set +e
(
  cd "$tmp" &&
    env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy \
      NO_PROXY='*' no_proxy='*' \
      "$st" --config-file "$tmp/schemathesis.toml" run "$base/openapi.json" \
      --checks "$checks" \
      --max-examples "$max_examples" \
      --header "Authorization: Bearer $token" \
      --header "X-Cedargate-Actor: $admin" \
      --request-timeout 60 \
      --max-redirects 0 \
      --generation-database none \
      --no-color \
      "${seed[@]}"
) | tee "$tmp/schemathesis.log"
status=${PIPESTATUS[0]}
set -e

tested=$(sed -n 's/^ *Tested: *\([0-9][0-9]*\).*/\1/p' "$tmp/schemathesis.log" | tail -n 1)
cases=$(sed -n '/^Test cases:/{n;s/^ *//;p;}' "$tmp/schemathesis.log" | tail -n 1)
if [ "$status" -ne 0 ]; then
  echo "--- sidecar log (last 50 lines)"
  tail -n 50 "$tmp/server.log"
  echo "schemathesis: FAILED (exit $status): ${tested:-?} operations, ${cases:-no test cases}; see above"
  exit 1
fi
echo "schemathesis: PASSED: ${tested:-?} operations, ${cases:-?}, checks $checks"
