#!/usr/bin/env bash
# Runs nats.py's own JetStream tests (nats/tests/test_js.py, the judge of issue 11) against
# `engine serve`, or with REFERENCE=1 against the real nats-server 2.9.10, and prints a
# pass/fail table per test.
#
#   scripts/nats-py-js.sh                 # engine
#   REFERENCE=1 scripts/nats-py-js.sh     # /usr/sbin/nats-server (Debian's 2.9.10)
#   scripts/nats-py-js.sh -x -vv -k test_fetch_n     # extra pytest args narrow the run
#
# Classes run: PublishTest, PullSubscribeTest, AckPolicyTest, DiscardPolicyTest, JSMTest,
# SubscribeTest (pytest node ids, so no other class matches by substring); CLASSES="KVTest …"
# runs others instead.
#
# What it needs / sets up when missing:
#   - a nats.py checkout at $NATS_PY (default /tmp/nats.py): `git clone
#     https://github.com/nats-io/nats.py` on a machine with network. Any git source will do:
#     the run in results/2026-12-02-nats-py-js.md used a local mirror of that repository,
#     checked out (`git worktree add`) at commit 06b6778, which that file names;
#   - a venv at $VENV (default /tmp/nats-py-js-venv) with the checkout's nats-py installed
#     editable, plus pytest, pytest-asyncio, pytest-timeout, nkeys, aiohttp (from PyPI);
#   - REFERENCE=1: /usr/sbin/nats-server (`apt-get install -y nats-server` if missing);
#   - otherwise: cargo; the engine is built with `cargo build --release -p engine`
#     (NO_BUILD=1 skips it; ENGINE_BIN overrides the binary).
#
# How the harness is served: nats.py's tests/utils.py starts `nats-server` from PATH as
#   nats-server -p 4222 -m 8222 -a 127.0.0.1 -js -sd=<fresh temp dir>
# per test (SIGKILLs it afterwards) and waits until GET http://127.0.0.1:8222/varz answers 200
# (up to ~100 tries, 0.1 s apart; then it goes on anyway). In engine mode a generated wrapper
# named `nats-server` is put first on PATH: it translates those flags into
#   engine serve --jetstream --data-dir <the -sd dir or a fresh temp dir> --listen 127.0.0.1:<-p>
# and execs the engine (so the harness's pid is the engine's and its SIGKILL stops it); flags
# the engine has no equivalent for are printed to stderr (which the harness discards) and to
# $WORK/wrapper-<mode>.log, with every command line and exec. Since the
# engine has no monitoring port, the wrapper also starts a readiness-only stand-in on the -m
# port that answers 200 on /varz once the engine's client port accepts TCP (404 otherwise),
# and exits when the engine does. In REFERENCE=1 mode the wrapper execs /usr/sbin/nats-server
# with the arguments unchanged.
#
# Fixed ports 4222 and 8222 must be free. Per-test timeout: $TEST_TIMEOUT s (default 60).
# Output: the table on stdout and in $WORK/table-<mode>.txt, junit XML in $WORK/<mode>.xml,
# full pytest log in $WORK/pytest-<mode>.log (<mode> is engine or reference; a run given extra
# pytest args writes <mode>-subset files instead). After a full run, when both modes' XML
# exist, a side-by-side markdown table is printed as well. $WORK defaults to /tmp/nats-py-js.
# Any server or stand-in the wrapper started that is still alive at the end is killed (by the
# pids it recorded, after checking their command lines). Not part of CI; about a minute a run
# once built. Exit status: pytest's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
NATS_PY=${NATS_PY:-/tmp/nats.py}
VENV=${VENV:-/tmp/nats-py-js-venv}
WORK=${WORK:-/tmp/nats-py-js}
TEST_TIMEOUT=${TEST_TIMEOUT:-60}
mode=engine
[ "${REFERENCE:-0}" = 1 ] && mode=reference
mkdir -p "$WORK/bin"

# --- nats.py checkout and venv -------------------------------------------------------------
if [ ! -f "$NATS_PY/nats/tests/test_js.py" ]; then
  git clone https://github.com/nats-io/nats.py "$NATS_PY"
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e "$NATS_PY/nats" pytest pytest-asyncio pytest-timeout nkeys aiohttp
fi

# --- the server behind `nats-server` --------------------------------------------------------
if [ "$mode" = reference ]; then
  [ -x /usr/sbin/nats-server ] || apt-get install -y nats-server
  target=/usr/sbin/nats-server
  /usr/sbin/nats-server --version >&2
else
  if [ -z "${ENGINE_BIN:-}" ]; then
    [ "${NO_BUILD:-0}" = 1 ] || (cd "$root" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release -p engine)
    ENGINE_BIN=$root/target/release/engine
  fi
  # a private copy: a concurrent rebuild in the checkout does not change the binary mid-run
  cp "$ENGINE_BIN" "$WORK/engine"
  target=$WORK/engine
fi

cat > "$WORK/bin/varz-shim.py" <<'PY'
# Readiness-only stand-in for nats-server's monitoring port: 200 on /varz once the client port
# accepts TCP, 404 otherwise; exits when the server pid (argv[1]) is gone or a zombie.
import os, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer
pid, http_port, nats_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def nats_up():
    try:
        socket.create_connection(("127.0.0.1", nats_port), 0.2).close(); return True
    except OSError:
        return False
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path.startswith("/varz") and nats_up()
        body = b"{}" if ok else b"not served by the engine"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer.allow_reuse_address = True
srv = None
for _ in range(200):
    if not alive(): sys.exit(0)
    try:
        srv = HTTPServer(("127.0.0.1", http_port), H); break
    except OSError:
        time.sleep(0.05)
if srv is None: sys.exit(1)
threading.Thread(target=srv.serve_forever, daemon=True).start()
while alive(): time.sleep(0.05)
srv.server_close(); os._exit(0)   # not shutdown(): it waits up to 0.5 s for serve_forever
PY

cat > "$WORK/bin/nats-server" <<'SH'
#!/usr/bin/env bash
# Generated by scripts/nats-py-js.sh: nats-server's command line -> `engine serve`.
log=${NATS_PY_JS_LOG:-/dev/null}
echo "$$ $(date +%T) ARGV $*" >> "$log"
echo "$$" >> "$NATS_PY_JS_PIDS"
if [ "$NATS_PY_JS_MODE" = reference ]; then exec "$NATS_PY_JS_TARGET" "$@"; fi
port=4222 http= sd= addr=127.0.0.1 ignored=()
while [ $# -gt 0 ]; do
  a=$1; shift
  case $a in
    -*=*) k=${a%%=*} v=${a#*=} ;;
    -p|--port|-m|--http_port|-sd|--store_dir|-a|--addr|--net|--user|--pass|--auth|\
    --tlscert|--tlskey|--tlscacert|--cluster_listen|--routes|--cluster_name|-c|--config|\
    -n|--name|--server_name|-l|--log|-P|--pid)
      k=$a v=${1-}; shift || true ;;
    *) k=$a v= ;;
  esac
  case $k in
    -p|--port) port=$v ;;
    -m|--http_port) http=$v ;;
    -sd|--store_dir) sd=$v ;;
    -a|--addr|--net) addr=$v ;;
    -js|--jetstream) ;;
    *) ignored+=("$k${v:+ $v}") ;;
  esac
done
if [ "$addr" != 127.0.0.1 ] && [ "$addr" != localhost ] && [ "$addr" != 0.0.0.0 ]; then
  ignored+=("-a $addr (served on 127.0.0.1)")
fi
if [ -z "$sd" ]; then sd=$(mktemp -d /tmp/nats-py-js-store.XXXXXX); fi
if [ ${#ignored[@]} -gt 0 ]; then
  printf 'nats-server wrapper: no engine equivalent, ignored: %s\n' "${ignored[*]}" >&2
  echo "$$ IGNORED ${ignored[*]}" >> "$log"
fi
if [ -n "$http" ]; then
  python3 "$(dirname "$0")/varz-shim.py" "$$" "$http" "$port" </dev/null >/dev/null 2>&1 &
  echo "$!" >> "$NATS_PY_JS_PIDS"
fi
echo "$$ EXEC $NATS_PY_JS_TARGET serve --jetstream --data-dir $sd --listen 127.0.0.1:$port" >> "$log"
exec "$NATS_PY_JS_TARGET" serve --jetstream --data-dir "$sd" --listen "127.0.0.1:$port"
SH
chmod +x "$WORK/bin/nats-server"

# a narrowed run (extra pytest args) keeps its own files, so it never overwrites a full run's
tag=$mode
[ $# -gt 0 ] && tag=$mode-subset
export NATS_PY_JS_MODE=$mode NATS_PY_JS_TARGET=$target
export NATS_PY_JS_LOG=$WORK/wrapper-$tag.log NATS_PY_JS_PIDS=$WORK/pids-$tag
: > "$NATS_PY_JS_LOG"; : > "$NATS_PY_JS_PIDS"

# Kills what the wrapper recorded and is still alive, checking the command line first (a pid
# may have been reused by an unrelated process since).
stop_servers() {
  local p cmd
  while read -r p; do
    [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] || continue
    cmd=$(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline") || continue
    case $cmd in
      *"$NATS_PY_JS_TARGET"*|*varz-shim.py*) kill -9 "$p" 2>/dev/null || true ;;
    esac
  done < "$NATS_PY_JS_PIDS"
}
trap stop_servers EXIT

# --- the tests ------------------------------------------------------------------------------
classes=${CLASSES:-"PublishTest PullSubscribeTest AckPolicyTest DiscardPolicyTest JSMTest SubscribeTest"}
ids=()
for c in $classes; do ids+=("tests/test_js.py::$c"); done
cd "$NATS_PY/nats"
set +e
PATH="$WORK/bin:$VENV/bin:$PATH" python -m pytest -p no:cacheprovider -o addopts= \
  --timeout="$TEST_TIMEOUT" -rA -v --junitxml="$WORK/$tag.xml" "${ids[@]}" "$@" \
  2>&1 | tee "$WORK/pytest-$tag.log"
rc=${PIPESTATUS[0]}
set -e

# --- the table ------------------------------------------------------------------------------
"$VENV/bin/python" - "$WORK" "$tag" <<'PY' | tee "$WORK/table-$tag.txt"
import os, sys, xml.etree.ElementTree as ET
work, mode = sys.argv[1], sys.argv[2]
def load(m):
    p = os.path.join(work, m + ".xml")
    if not os.path.exists(p): return None
    out = {}
    for tc in ET.parse(p).iter("testcase"):
        name = tc.get("classname").rsplit(".", 1)[-1] + "::" + tc.get("name")
        st = "pass"
        for child in tc:
            if child.tag in ("failure", "error"): st = "FAIL"
            elif child.tag == "skipped": st = "skip"
        out[name] = (st, float(tc.get("time") or 0))
    return out
me = load(mode)
n = {s: sum(1 for v in me.values() if v[0] == s) for s in ("pass", "FAIL", "skip")}
print(f"\n{mode}: {n['pass']} passed, {n['FAIL']} failed, {n['skip']} skipped")
for k, (st, t) in me.items():
    print(f"  {st:4}  {t:6.2f}s  {k}")
ref, eng = load("reference"), load("engine")
if ref and eng and not mode.endswith("-subset"):
    print("\n| test | nats-server 2.9.10 | engine |\n| --- | --- | --- |")
    for k in sorted(set(ref) | set(eng), key=lambda k: (list(ref) + [x for x in eng if x not in ref]).index(k)):
        print(f"| {k} | {ref.get(k, ('-',))[0]} | {eng.get(k, ('-',))[0]} |")
PY
exit "$rc"
