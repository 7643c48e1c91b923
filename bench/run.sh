#!/usr/bin/env bash
# Runs the benchmarks: installs nginx, wrk and redis-server (Debian) when missing, builds the release
# binary, then bench/bench.py prints the tables (markdown) on stdout; progress goes to stderr.
#   ROUNDS=3 RUN_SECS=10 CONNECTIONS=64 SESSIONS=10000,100000 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >&2
fi
export PATH="$PATH:/usr/sbin"

echo "== cargo build --release" >&2
cargo build --release >&2

echo "== machine: $(nproc) cores, $(uname -sr), $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1)" >&2
exec python3 bench/bench.py
