#!/usr/bin/env bash
# The whole test suite. Installs what the tests need on a fresh Debian
# machine first, so that it passes there by itself; `.ci/run` calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The browser test of the invitation page (tests/api/browser.rs) drives
# Debian's Chromium headless through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  need_apt+=(chromium chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Benches are compiled by clippy --all-targets but not run here: they
# build stores of up to a million entities (`cargo bench`, bench/http.py).
cargo test --locked --lib --bins --tests
