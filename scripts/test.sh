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
