#!/usr/bin/env bash
# The whole test suite. Installs what the tests need on a fresh Debian
# machine first, so that it passes there by itself; `.ci/run` calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (system packages are added here as tests come to need them)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

cargo test --all-targets --locked
