#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need, then runs the Rust unit
# and integration tests (cargo-nextest, or cargo test where nextest is missing), the Node
# tests (the official @cloudbase/js-sdk against the emulator) and the browser tests
# (playwright-core driving Debian's chromium through every sign-in flow of the demo). The Rust
# tests start their own nginx and redis-server (Debian's) on ephemeral ports.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# Debian's chromium for the browser tests, CJK fonts so the Chinese pages render (and
# their screenshots show text, not boxes), nginx for the forward-auth tests behind it, and
# redis-server, redis-cli and openssl for the shared-store tests (standalone, ACL, TLS,
# sentinel and cluster servers they start themselves; the TLS certificates are made there).
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "installing ${need[*]} needs root or sudo" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

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

export GATEWAY_TEST_BIN="$PWD/target/debug/cloudbase-gateway"

say "Node tests (official SDK against the emulator)"
node --test tests/sdk/*.test.mjs

say "Browser tests (chromium; screenshots in tests/e2e/output)"
node --test --test-concurrency=1 tests/e2e/*.test.mjs
