#!/usr/bin/env bash
# JetStream recovery time (issue 11): how long a server takes, after a `kill -9`, to accept
# connections again with about a million 128-byte messages kept in a file stream, for the
# engine (`engine serve --jetstream --data-dir`) and nats-server (`nats-server -js -sd`).
#
#   scripts/js-recovery.sh                 # ~1M messages, 5 restarts per server
#   scripts/js-recovery.sh --seconds 2 --restarts 3   # a quick check
#
# Per server: start it on a free loopback port with a fresh store, fill the stream with
# `loadgen js` (confirmed publishes, window 1024, for --seconds; the stream is kept), read
# the stream's message count, `kill -9` it, then --restarts times: start it again on the
# same store, time from the launch until it has sent INFO and answered a STREAM.INFO
# request (scripts/js_restart_probe.py: what "back to serving" means to a client), check
# the count is unchanged
# (nothing confirmed lost), and `kill -9` it again. Prints one line per restart and the
# median; writes the lines to <out>/recovery.txt (default results/<date>-js-recovery).
# Builds `cargo build --release -p engine -p loadgen` first; installs nats-server from
# Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/common.sh
. scripts/common.sh

seconds=6 restarts=5 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --restarts) restarts=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "js-recovery.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out="results/$(date -u +%Y-%m-%d)-js-recovery"
mkdir -p "$out"

cargo build --release -p engine -p loadgen >&2
install_if_missing nats-server nats-server
engine_bin=target/release/engine
loadgen_bin=target/release/loadgen
nats_bin=$(find_bin nats-server)

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls until the port accepts (the moment being measured), or fails.
wait_listening() {
    local port=$1 pid=$2
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.005
    done
}

# The stream's message count, by a STREAM.INFO request over a raw connection.
count() {
    python3 - "$1" <<'EOF'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
f.readline()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.c 1\r\nPUB $JS.API.STREAM.INFO.LOADGEN _INBOX.c 0\r\n\r\n')
line = f.readline().split()
body = f.read(int(line[-1]))
print(json.loads(body)["state"]["messages"])
EOF
}

start() {
    local server=$1 port=$2 data=$3
    if [ "$server" = engine ]; then
        "$engine_bin" serve --jetstream --data-dir "$data" --listen "127.0.0.1:$port" \
            >>"$data.log" 2>&1 &
    else
        "$nats_bin" -js -sd "$data" -a 127.0.0.1 -p "$port" >>"$data.log" 2>&1 &
    fi
    echo $!
}

report="$out/recovery.txt"
{
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), revision $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (uncommitted changes)'),"
    echo "# $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r)"
    echo "# scripts/js-recovery.sh --seconds $seconds --restarts $restarts"
} >"$report"
for server in engine nats; do
    data=$(mktemp -d)
    port=$(free_port)
    pid=$(start "$server" "$port" "$data")
    wait_listening "$port" "$pid"
    "$loadgen_bin" js --url "nats://127.0.0.1:$port" --storage file --window 1024 \
        --duration "$seconds" --warmup 0 --keep --no-save --quiet >/dev/null
    kept=$(count "$port")
    bytes=$(du -sb "$data" | cut -f1)
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    times=()
    for i in $(seq 1 "$restarts"); do
        port=$(free_port)
        read -r ms after pid < <(python3 scripts/js_restart_probe.py "$port" "$server" "$data" \
            "$engine_bin" "$nats_bin")
        [ "$after" = "$kept" ] || { echo "$server: $kept messages before, $after after restart $i" >&2; exit 1; }
        times+=("$ms")
        echo "$server restart $i: serving $ms ms after launch (INFO sent, STREAM.INFO answered), $after messages kept ($bytes bytes on disk)" | tee -a "$report"
        kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$server median: $median ms for $kept messages" | tee -a "$report"
    rm -rf "$data" "$data.log"
done
