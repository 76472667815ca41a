#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, docs, unit, property and
# integration tests, loom models of the ring, benchmark smoke runs and a short fuzz run.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "rustfmt"
cargo fmt --all -- --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "tests (unit, property, integration, doc)"
cargo test --workspace

step "engine integration tests again, on the writev send path (the run above used the default: io_uring where it works)"
ENGINE_TEST_IO=writev cargo test -p engine --tests

step "benchmarks compile and run once (criterion test mode)"
cargo test --benches -p benches

step "loom models of the ring and doorbell"
LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}" bash scripts/loom.sh

step "fuzz smoke run"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
fuzz_log=$(mktemp)
if bash fuzz/run.sh "${FUZZ_SECONDS:-20}" >"$fuzz_log" 2>&1; then
  grep -E "^run.sh|Done [0-9]+ runs" "$fuzz_log" || true
  rm -f "$fuzz_log"
else
  tail -n 60 "$fuzz_log"
  echo "fuzzing found a crash (full log: $fuzz_log)"
  exit 1
fi

echo
echo "all checks passed"
