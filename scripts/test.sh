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
