#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need, then runs the Rust unit
# and integration tests (cargo-nextest, or cargo test where nextest is missing) and the Node
# tests (the official @cloudbase/js-sdk against the emulator).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# npm packages, exactly as the lockfile pins them.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
fi

say "cargo build (the binary the Node tests start)"
cargo build --bins

say "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --no-fail-fast
else
  cargo test --all-targets --no-fail-fast
fi

say "Node tests (official SDK against the emulator)"
GATEWAY_TEST_BIN="$PWD/target/debug/cloudbase-gateway" node --test tests/sdk/
