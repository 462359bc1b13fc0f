#!/usr/bin/env bash
# Runs every test of the project: starts (installing if needed) the real
# services the integration tests use, then the whole Rust suite: unit tests
# next to the code and the integration tests in tests/.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -- config::     # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n[test] %s\n' "$*"; }
started=$SECONDS

# What a failure needs to be understood from CI output alone: free disk (a full
# disk turns the services read-only) and the services' own error lines.
disk() { df -h . "${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}" 2>/dev/null | uniq || true; }
on_failure() {
  local rc=$?
  printf '\n[test] FAILED (exit %s) after %s s; free disk:\n' "$rc" "$((SECONDS - started))"
  disk
  local log
  for log in "${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}"/logs/*.log; do
    [[ -s $log ]] || continue
    printf '\n[test] last error lines of %s:\n' "$log"
    grep -a -i -E '(^|[^a-z])(error|fatal|panic)' "$log" | tail -n 5 || true
  done
  exit "$rc"
}
trap on_failure ERR

step "free disk"
disk
# A fresh clone's build takes about 3 GB under target/, the services and their
# test data a few more: say so now rather than fail half way with ENOSPC.
# The least free of this checkout's disk and the services' (created if need be).
mkdir -p "${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}"
free_kb=$(df -Pk . "${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}" | awk 'NR > 1 && (min == "" || $4 < min) { min = $4 } END { print min }')
if [[ $free_kb =~ ^[0-9]+$ ]] && ((free_kb < 10 * 1024 * 1024)); then
  echo "[test] warning: $((free_kb / 1024)) MB free; a fresh build and the test services need about 10 GB"
  du -sh "${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}"/* 2>/dev/null || true
fi

# The test topics are throwaway, and the broker keeps every message for ever
# (no retention in tansu 0.6.0): a broker this run starts begins empty. One
# already running is left alone, with its store's size shown.
step "the broker's store"
if scripts/services.sh status kafka; then
  store_kb=$(du -sk "${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}/kafka" | cut -f1 || true)
  echo "running, so kept: $((${store_kb:-0} / 1024)) MB ('scripts/services.sh wipe kafka' empties it)"
  if [[ ${store_kb:-0} =~ ^[0-9]+$ ]] && ((store_kb > 10 * 1024 * 1024)); then
    echo "[test] warning: the broker's store is over 10 GB; each run adds about 1.5 GB"
  fi
else
  scripts/services.sh wipe kafka
fi

step "services: install if missing and start"
scripts/services.sh up
eval "$(scripts/services.sh env)"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit + integration against the services)"
cargo test --locked --all-targets "$@"

if [[ $# -eq 0 ]]; then
  step "the quickstart, end to end, with the test build of tidewater"
  TIDEWATER_BIN=target/debug/tidewater scripts/quickstart.sh
fi

step "all tests passed in $((SECONDS - started)) s"
