#!/usr/bin/env bash
# Runs the loom models of the SPSC ring and the doorbell (engine/src/loom_models.rs).
#
# `--cfg engine_loom` is passed to the engine crate only (through `cargo rustc`), so its
# dependencies are not rebuilt; the library's unit-test binary is then run, filtered to the
# models. LOOM_MAX_PREEMPTIONS bounds preemptions (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
exe=$(cargo rustc -p engine --lib --profile test --message-format=json-render-diagnostics \
        -- --cfg engine_loom \
      | python3 -c 'import json,sys
exe=None
for line in sys.stdin:
    m=json.loads(line)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="engine" and m.get("executable"):
        exe=m["executable"]
print(exe or "")')
if [ -z "$exe" ]; then
  echo "could not find the loom test binary" >&2
  exit 1
fi
"$exe" loom_models --test-threads=1 "$@"
