#!/usr/bin/env bash
# JetStream side by side (issue 11): the engine (`engine serve --jetstream`) and nats-server
# (`nats-server -js`) measured by `loadgen js` in one sitting, alternating servers, each run
# against a freshly started server on a free loopback port with a fresh store directory.
#
#   scripts/js-compare.sh                         # W = 1, 64, 1024 at 128 B, 3 repetitions
#   scripts/js-compare.sh --reps 1 --duration 2 --warmup 1 --fill 50000   # a quick check
#
# Options (defaults in brackets):
#   --reps N [3]  --duration S [10]  --warmup S [2]  --windows LIST [1,64,1024]
#   --size BYTES [128]  --fill N [200000] (messages drained by each consume run)
#   --fsync-interval MS [10] (the engine's --fsync interval=<ms> mode)
#   --rate R [none] open loop: publish runs send R msgs/s on a fixed schedule (W is then a
#     cap on PubAcks outstanding) and their confirm latency is measured from each publish's
#     scheduled send time; without it the window is closed loop
#   --no-consume  skip the consume runs
#   --out DIR [results/<date>-js-compare, or -2, -3, … if taken]
#
# Storage: file streams where the engine has them (`--data-dir` in `engine serve --help`),
# every engine `--fsync` mode it offers (always, interval=<ms>, never) against nats-server's
# file store with its own defaults; otherwise memory streams on both, and the output says
# so. Per repetition: a publish run per window and server mode, then one consume run per
# server mode (a `--fill` of the purged stream, then a pull consumer drains it; servers
# without consumers fail that run, and the table says so).
#
# Writes each run's JSON (and the run's loadgen and server logs) into
# <out>/<server>-<mode>-w<W>-r<N>/ (consume runs: <server>-<mode>-consume-r<N>/; modes
# fsync_always, fsync_interval<ms>, fsync_never, file, memory) and prints
# the medians over repetitions with the ratio engine/nats-server; the table is also written
# to <out>/medians.md. Builds only `cargo build --release -p engine -p loadgen`, at the start;
# installs nats-server from Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/common.sh
. scripts/common.sh

reps=3 duration=10 warmup=2 windows=1,64,1024 size=128 fill=200000 fsync_interval=10 out=""
rate="" consume=1
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --windows) windows=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --fill) fill=$2; shift 2 ;;
        --fsync-interval) fsync_interval=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --no-consume) consume=0; shift ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "js-compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

install_if_missing nats-server nats-server
nats_bin=$(find_bin nats-server)

cargo build --release -p engine -p loadgen
target_dir="${CARGO_TARGET_DIR:-target}"
engine_bin="$target_dir/release/engine"
loadgen_bin="$target_dir/release/loadgen"

if [ -z "$out" ]; then
    base="results/$(date -u +%F)-js-compare"
    out=$base n=1
    while [ -e "$out" ]; do n=$((n + 1)); out="$base-$n"; done
fi
mkdir -p "$out"

# The server modes of this sitting: "<server> <mode> <storage> <engine serve flags>"; a
# mode's name has no dash (the folders are <server>-<mode>-…).
help=$("$engine_bin" serve --help)
modes=()
if grep -q -- '--data-dir' <<<"$help"; then
    storage=file
    if grep -q -- '--fsync' <<<"$help"; then
        for f in always "interval=$fsync_interval" never; do
            modes+=("engine fsync_${f/=/} file --fsync $f")
        done
    else
        echo "js-compare.sh: the engine has --data-dir but no --fsync: its default only" >&2
        modes+=("engine file file")
    fi
    modes+=("nats file file")
    storage_note="file streams (engine --data-dir, each --fsync mode; nats-server -sd with its defaults)"
else
    storage=memory
    modes=("engine memory memory" "nats memory memory")
    storage_note="memory streams on both: this engine has no --data-dir yet (file streams refused)"
fi
echo "js-compare.sh: $storage_note" >&2
echo "js-compare.sh: writing into $out" >&2

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls the port until the server accepts (it is the only thing to wait on), or fails.
wait_listening() {
    local port=$1 pid=$2 tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        tries=$((tries + 1))
        [ "$tries" -lt 500 ] || return 1
        sleep 0.02
    done
}

# run_one <server> <mode> <storage> <run folder> <loadgen js flags...> -- <engine flags...>
run_one() {
    local server=$1 mode=$2 storage=$3 dir=$4
    shift 4
    local lg_args=() srv_args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do lg_args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    srv_args=("$@")
    mkdir -p "$dir"
    local port data cmd pid
    port=$(free_port)
    data=$(mktemp -d)
    if [ "$server" = engine ]; then
        cmd=("$engine_bin" serve --jetstream --listen "127.0.0.1:$port")
        if [ "$storage" = file ]; then cmd+=(--data-dir "$data" "${srv_args[@]}"); fi
    else
        cmd=("$nats_bin" -js -sd "$data" -a 127.0.0.1 -p "$port")
    fi
    "${cmd[@]}" >"$dir/server.log" 2>&1 &
    pid=$!
    local ok=0
    if wait_listening "$port" "$pid"; then
        if "$loadgen_bin" js --url "nats://127.0.0.1:$port" --storage "$storage" --size "$size" \
            --server-pid "$pid" --server-note "${cmd[*]}" --out "$dir" --quiet "${lg_args[@]}" \
            >"$dir/summary.txt" 2>"$dir/loadgen.log"; then
            ok=1
        fi
    else
        echo "the server did not start: ${cmd[*]}" >"$dir/loadgen.log"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
    if [ "$ok" = 1 ]; then
        sed -n '2,5p' "$dir/summary.txt" >&2
    else
        echo "   failed: $(grep -m 1 '^Error' "$dir/loadgen.log" || tail -n 1 "$dir/loadgen.log")" >&2
    fi
}

IFS=, read -r -a window_list <<<"$windows"
for rep in $(seq 1 "$reps"); do
    for w in "${window_list[@]}"; do
        for m in "${modes[@]}"; do
            read -r server mode st flags <<<"$m"
            echo "== rep $rep/$reps: publish W=$w against $server ($mode)" >&2
            # shellcheck disable=SC2086 # the engine flags are words on purpose
            run_one "$server" "$mode" "$st" "$out/$server-$mode-w$w-r$rep" \
                --mode publish --window "$w" --duration "$duration" --warmup "$warmup" \
                ${rate:+--rate "$rate"} --label "$server-$mode-w$w-r$rep" -- $flags
        done
    done
    [ "$consume" = 1 ] || continue
    for m in "${modes[@]}"; do
        read -r server mode st flags <<<"$m"
        echo "== rep $rep/$reps: consume ($fill messages) against $server ($mode)" >&2
        # shellcheck disable=SC2086
        run_one "$server" "$mode" "$st" "$out/$server-$mode-consume-r$rep" \
            --mode consume --fill "$fill" --window 1024 --duration 60 \
            --label "$server-$mode-consume-r$rep" -- $flags
    done
done

python3 - "$out" "$storage_note" "$reps" "$rate" <<'PY' | tee "$out/medians.md"
import glob, json, os, statistics, sys

out, note, reps, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
runs = {}
for path in glob.glob(os.path.join(out, "*", "*.json")):
    with open(path) as f:
        r = json.load(f)
    folder = os.path.basename(os.path.dirname(path))
    server, mode, what = folder.split("-", 2)
    what = what.rsplit("-r", 1)[0]
    runs.setdefault((server, mode, what), []).append(r)
folders = {os.path.basename(d) for d in glob.glob(os.path.join(out, "*")) if os.path.isdir(d)}

def med(rs, f):
    vals = [v for v in (f(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None

def num(v):
    return "–" if v is None else (f"{v / 1e3:.1f} k" if v >= 1e4 else f"{v:.0f}")

def lat(v):
    if v is None:
        return "–"
    return f"{v / 1e3:.2f} ms" if v >= 1000 else f"{v:.0f} µs"

def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}×"

first = next(iter(runs.values()), [{}])[0]
machine = first.get("machine", {})
print(f"# JetStream: engine vs nats-server, {first.get('started_utc', '')[:10]}\n")
print(f"Machine: {machine.get('cores')} cores, {machine.get('cpu_model')}, kernel "
      f"{machine.get('kernel')}; revision {first.get('git', {}).get('revision')}. "
      f"{note}. Medians of {reps} repetitions (runs that completed). "
      f"{first.get('config', {}).get('size')} B messages, one publishing connection. "
      + (f"Open loop at {rate} msgs/s: confirm latency from each publish's scheduled send time "
         "to its PubAck (coordinated omission avoided), W a cap on PubAcks outstanding.\n"
         if rate else
         "Confirm latency is closed loop: from each publish's actual send to its PubAck, with W "
         "publishes outstanding (coordinated omission by construction).\n"))
modes = sorted({(s, m) for (s, m, _) in runs} | {tuple(f.split("-", 2)[:2]) for f in folders})
nats = [m for m in modes if m[0] == "nats"]
windows = sorted({int(w[1:]) for (_, _, w) in runs if w.startswith("w")} |
                 {int(f.split("-")[2][1:]) for f in folders if f.split("-")[2].startswith("w")})
print("| W | server | mode | runs ok | confirmed/s | p50 | p99 | ratio engine/nats confirmed/s |")
print("|---|---|---|---|---|---|---|---|")
for w in windows:
    base = med(runs.get((nats[0][0], nats[0][1], f"w{w}"), []),
               lambda r: r["publish"]["confirmed_per_sec"]) if nats else None
    for s, m in modes:
        rs = runs.get((s, m, f"w{w}"), [])
        tried = sum(1 for f in folders if f.startswith(f"{s}-{m}-w{w}-r"))
        c = med(rs, lambda r: r["publish"]["confirmed_per_sec"])
        p50 = med(rs, lambda r: r["latency"]["summary"]["p50_us"])
        p99 = med(rs, lambda r: r["latency"]["summary"]["p99_us"])
        r = ratio(c, base) if s == "engine" else ""
        print(f"| {w} | {s} | {m} | {len(rs)}/{tried} | {num(c)} | {lat(p50)} | {lat(p99)} | {r} |")
consumed = any("-consume-r" in f for f in folders)
if consumed:
    print("\n| server | mode | runs ok | drained/s | batch p50 | batch p99 | acks settled (s) | ratio engine/nats drained/s |")
    print("|---|---|---|---|---|---|---|---|")
base = med(runs.get((nats[0][0], nats[0][1], "consume"), []),
           lambda r: r["consume"]["drained_per_sec"]) if nats else None
for s, m in modes if consumed else []:
    rs = runs.get((s, m, "consume"), [])
    tried = sum(1 for f in folders if f.startswith(f"{s}-{m}-consume-r"))
    d = med(rs, lambda r: r["consume"]["drained_per_sec"])
    p50 = med(rs, lambda r: r["latency"]["summary"]["p50_us"])
    p99 = med(rs, lambda r: r["latency"]["summary"]["p99_us"])
    acked = med(rs, lambda r: r["consume"]["acked_secs"])
    note = "" if rs or not tried else " (failed: see loadgen.log)"
    r = ratio(d, base) if s == "engine" else ""
    a = "–" if acked is None else f"{acked:.2f}"
    print(f"| {s} | {m}{note} | {len(rs)}/{tried} | {num(d)} | {lat(p50)} | {lat(p99)} | {a} | {r} |")
# Why runs failed: the first error line of each failed run's log.
failed = sorted(f for f in folders if not glob.glob(os.path.join(out, f, "*.json")))
if failed:
    print("\nFailed runs:\n")
for f in failed:
    why = "no log"
    log = os.path.join(out, f, "loadgen.log")
    if os.path.exists(log):
        lines = [l.strip() for l in open(log) if l.strip()]
        why = next((l for l in lines if l.startswith("Error")), lines[-1] if lines else "empty log")
    print(f"- {f}: {why}")
PY
