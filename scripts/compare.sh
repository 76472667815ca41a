#!/usr/bin/env bash
# Side-by-side comparison: the engine, nats-server and Redis measured by the same load
# generator, on loopback ports of this machine.
#
#   scripts/compare.sh                 # full scenario set, 3 repetitions (about 15 minutes)
#   scripts/compare.sh --reps 1 --scenarios low-load-1to1 --servers nats,redis
#   scripts/compare.sh --list          # the scenarios
#   scripts/compare.sh --scenarios chat-10k-100rooms-1k,chat-1k-10rooms-max
#                                      # the engine on plain subjects vs its chat rooms
#   scripts/compare.sh --servers engine,engine-chat --scenarios 1k-10rooms-max
#                                      # any scenario's shape, plain vs chat (engine only)
#
# `engine-chat` is the engine measured with `loadgen run --chat` (rooms of its chat layer,
# docs/chat.md); the `chat-*` scenarios run against engine and engine-chat only.
#
# Builds the engine and loadgen in release mode, installs nats-server and redis-server from
# Debian if they are missing, then runs `loadgen compare` (which starts each server on a free
# loopback port per run and writes results/<date>-compare.md and its SVG plots, and one JSON
# per run into results/<date>-compare/, the folder named after the summary).
# Extra arguments go to `loadgen compare`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/common.sh
. scripts/common.sh

install_if_missing nats-server nats-server
install_if_missing redis-server redis-server

cargo build --release -p engine -p loadgen
target_dir="${CARGO_TARGET_DIR:-target}"

exec "$target_dir/release/loadgen" compare \
    --engine-bin "$target_dir/release/engine" \
    --nats-bin "$(find_bin nats-server)" \
    --redis-bin "$(find_bin redis-server)" \
    "$@"
