#!/usr/bin/env bash
# CPU seconds per role of one `topk replay` (BENCHMARKS.md): every 0.3 s each thread's user
# + system time is read from /proc, and the largest seen per thread is summed by thread
# name (batch, speed, archive, aggregator-N, and the main thread: reading, parsing and
# appending to the events log). A thread's time after its last sample is missed, so the
# figures are a little low; they are the process's own accounting, not a profiler's.
# Usage: scripts/thread_cpu.sh TOPK_BINARY INPUT DATA_DIR [replay flags...]
set -euo pipefail
bin=$1 input=$2 dir=$3
shift 3
rm -rf "$dir"
"$bin" replay "$input" --data-dir "$dir" "$@" >/dev/null 2>&1 &
pid=$!
declare -A ticks
while kill -0 "$pid" 2>/dev/null; do
    for task in /proc/"$pid"/task/*; do
        name=$(cat "$task/comm" 2>/dev/null) || continue
        t=$(awk '{print $14 + $15}' "$task/stat" 2>/dev/null) || continue
        [ -n "$t" ] || continue
        key="$name/${task##*/}"
        if [ "${ticks[$key]:-0}" -lt "$t" ]; then ticks[$key]=$t; fi
    done
    sleep 0.3
done
wait "$pid"
hz=$(getconf CLK_TCK)
for key in "${!ticks[@]}"; do echo "${key%/*} ${ticks[$key]}"; done |
    awk -v hz="$hz" '{s[$1] += $2} END {for (k in s) printf "%-14s %6.1f s\n", k, s[k] / hz}' | sort -k2 -rn
