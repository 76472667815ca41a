#!/usr/bin/env bash
# Runs a NATS client library's own test suite against `engine serve` (or, for the baseline,
# against nats-server from PATH), inside a private network namespace with only loopback up.
#
#   scripts/client-suites/run.sh py engine|baseline NATS_PY_CHECKOUT [pytest args]
#   scripts/client-suites/run.sh rs engine|baseline NATS_RS_CHECKOUT [cargo test args]
#
# py: nats.py's legacy client tests (NATS_PY_CHECKOUT/nats/tests/test_client*.py), in a venv
#     under $WORK with pytest, pytest-asyncio, pytest-timeout, nkeys and aiohttp.
# rs: nats.rs's async-nats/tests/client_tests.rs.
# The engine is built in release mode; the stand-in `nats-server` (this folder) is put first
# on PATH. Results: results/2026-12-02-client-suites.md. Long (minutes); not part of CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
suite=$1 mode=$2 checkout=$(cd "$3" && pwd); shift 3
WORK=${WORK:-/tmp/engine-client-suites}
mkdir -p "$WORK/bin" "$WORK/tmp"
(cd "$root" && cargo build --release -p engine)
cp "$root/target/release/engine" "$WORK/engine"
cp "$here/nats-server" "$WORK/bin/nats-server"
cp "$here/varz_shim.py" "$WORK/bin/varz_shim.py"
chmod +x "$WORK/bin/nats-server"
path=$PATH
[ "$mode" = engine ] && path="$WORK/bin:$PATH"
export ENGINE_BIN="$WORK/engine" WRAPPER_LOG="$WORK/wrapper-$suite-$mode.log" WRAPPER_TMP="$WORK/tmp"
case "$suite" in
py)
  [ -x "$WORK/venv/bin/python" ] || {
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q -e "$checkout/nats" pytest pytest-asyncio pytest-timeout nkeys aiohttp
  }
  cd "$checkout/nats"
  tests=${*:-tests/test_client.py tests/test_client_async_await.py tests/test_client_v2.py tests/test_client_nkeys.py tests/test_client_websocket.py}
  exec unshare -n bash -c "ip link set lo up && PATH=$WORK/venv/bin:$path python -m pytest -p no:cacheprovider --timeout=60 -rA -v $tests --junitxml=$WORK/py-$mode.xml"
  ;;
rs)
  cd "$checkout"
  export CARGO_TARGET_DIR="$WORK/nats.rs-target"
  cargo test -p async-nats --test client_tests --no-run
  exec unshare -n bash -c "ip link set lo up && PATH=$path cargo test -p async-nats --test client_tests -- --test-threads=2 $*"
  ;;
*) echo "usage: $0 py|rs engine|baseline CHECKOUT [args]" >&2; exit 2 ;;
esac
