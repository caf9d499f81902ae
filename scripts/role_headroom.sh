#!/usr/bin/env bash
# The headroom runs of SCALING.md: builds a flush log from FILE once (the aggregators
# alone, flushing every FLUSH_INTERVAL_MS, default 50), then runs the archive, the speed
# layer and the batch layer alone, one after the other, over a fresh copy of it, RUNS
# times (default 3). Each step prints its rows, wall and CPU time and peak RSS.
#
# usage: scripts/role_headroom.sh FILE WORKDIR [RUNS]
set -euo pipefail
file=$1
work=$2
runs=${3:-3}
cargo build --release -p topk --example role_headroom
bin=${CARGO_TARGET_DIR:-target}/release/examples/role_headroom
if [ ! -d "$work/base" ]; then
    mkdir -p "$work"
    "$bin" prepare "$file" "$work/base" --flush-interval-ms "${FLUSH_INTERVAL_MS:-50}"
fi
for _ in $(seq "$runs"); do
    rm -rf "$work/run"
    cp -a "$work/base" "$work/run"
    "$bin" archive "$work/run"
    "$bin" speed "$work/run"
    "$bin" batch "$work/run"
done
rm -rf "$work/run"
