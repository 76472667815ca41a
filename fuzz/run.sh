#!/usr/bin/env bash
# Fuzzes each target for SECONDS (default 30) with cargo-fuzz and libFuzzer.
# Exits non-zero if a target crashes; the input is saved under fuzz/artifacts/<target>/
# (replay it on any toolchain with `cargo run -p fuzz --bin <target> -- <file>`).
#
# cargo-fuzz passes nightly-only `-Z` flags to rustc; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. New corpus entries go to a temporary directory, so
# the committed seeds in fuzz/corpus/ are only read.
set -euo pipefail

secs="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz); not fuzzing." >&2
    exit 0
fi

export RUSTC_BOOTSTRAP=1
targets=(parser json chat)
# AddressSanitizer only matters for unsafe code, and the fuzzed crates have none;
# without it the build is quicker and needs no sanitizer runtime.
sanitizer="${FUZZ_SANITIZER:-none}"

cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"

status=0
for t in "${targets[@]}"; do
    work="$(mktemp -d)"
    echo "run.sh: fuzzing $t for ${secs}s"
    if ! cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=4096 -print_final_stats=1; then
        echo "run.sh: target $t FAILED; see fuzz/artifacts/$t/" >&2
        status=1
    fi
    rm -rf "$work"
done
exit "$status"
