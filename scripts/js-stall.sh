#!/usr/bin/env bash
# Does a durable load stall plain traffic? (issue 11: "an fsync never stalls a worker's event
# loop: the plain traffic on that worker keeps its latency while a durable load runs").
#
#   scripts/js-stall.sh               # 3 repetitions of each condition, 10 s each
#   scripts/js-stall.sh --reps 1 --duration 3
#
# One `engine serve --jetstream --data-dir` (2 workers, --fsync always), and a plain 1 -> 1
# latency probe (`loadgen run --users 1 --rooms 1 --publishers 1 --rate 100`, open loop,
# latency from each message's scheduled time) measured in three conditions, alternated:
#   alone      the probe by itself;
#   file       the probe while `loadgen js` publishes to a file stream with 1024 confirms in
#              flight (every confirm after an fsync);
#   memory     the same load on a memory stream (no log, no fsync): what the extra CPU of the
#              load costs the probe on a 2-core machine shared by the server and both load
#              generators, so that file - memory is what the log and its fsyncs add.
# Both workers carry probe connections (connections are dealt to workers in turn) and
# worker 0 is JetStream's owner, so the probe runs on the owner's loop too. Writes each
# probe's JSON into <out>/<condition>-r<N>/ (default results/<date>-js-stall) and prints the
# probe's p50/p99/max per run.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=3 duration=10 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "js-stall.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out="results/$(date -u +%Y-%m-%d)-js-stall"
mkdir -p "$out"

cargo build --release -p engine -p loadgen >&2
engine_bin=target/release/engine
loadgen_bin=target/release/loadgen
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
"$engine_bin" serve --jetstream --data-dir "$data" --workers 2 --listen "127.0.0.1:$port" \
    >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.02; done
url="nats://127.0.0.1:$port"

probe() {
    local dir=$1
    mkdir -p "$dir"
    "$loadgen_bin" run --url "$url" --users 1 --rooms 1 --publishers 1 --rate 100 \
        --duration "$duration" --warmup 1 --server-pid "$server" --out "$dir" --quiet \
        >"$dir/summary.txt" 2>&1
    local json
    json=$(ls "$dir"/*.json | head -n 1)
    python3 - "$json" "$dir" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency"]["summary"]
print(f"{sys.argv[2]}: p50 {l['p50_us']} us  p99 {l['p99_us']} us  max {l['max_us']} us")
EOF
}

for rep in $(seq 1 "$reps"); do
    for condition in alone file memory; do
        dir="$out/$condition-r$rep"
        load=""
        if [ "$condition" != alone ]; then
            "$loadgen_bin" js --url "$url" --storage "$condition" --stream "LOAD${condition^^}" \
                --prefix "load$condition" --window 1024 --duration $((duration + 3)) --warmup 0 \
                --no-save --quiet --allow-errors >"$out/$condition-r$rep-load.txt" 2>&1 &
            load=$!
        fi
        probe "$dir"
        if [ -n "$load" ]; then wait "$load" || true; fi
    done
done
