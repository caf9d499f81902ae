#!/usr/bin/env bash
# A soak at a sustained rate (BENCHMARKS.md, RELIABILITY.md): `topk serve --demo` at RATE
# events/s for MINUTES minutes with the default dedup window; every STEP seconds its RSS,
# its counters, its lag gauges (flush, archive, speed, watermark), the files and bytes of
# its data directory and its open file descriptors are sampled.
# Usage: scripts/soak.sh TOPK_BINARY [RATE] [MINUTES] [STEP]
set -euo pipefail
bin=$1 rate=${2:-20000} minutes=${3:-30} step=${4:-60} port=${PORT:-18500}
work=$(mktemp -d)
# Live traffic only: no generated history first (a flag older builds lack).
history=()
if "$bin" serve --help | grep -q -- --demo-history-days; then history=(--demo-history-days 0); fi
"$bin" serve --demo --demo-rate "$rate" "${history[@]}" --data-dir "$work/data" \
    --listen "127.0.0.1:$port" >/dev/null 2>"$work/log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf "127.0.0.1:$port/healthz" >/dev/null; do sleep 0.2; done
start=$(date +%s)
echo "minute,rss_mb,peak_rss_mb,anon_mb,file_mb,events_ingested,duplicates_dropped,dedup_mb,flush_lag_events,archive_lag_batches,speed_lag_batches,watermark_lag_s,data_files,data_mb,open_fds"
while (( $(date +%s) - start <= minutes * 60 )); do
    rss=$(awk '/VmRSS/ {print int($2 / 1024)}' /proc/$server/status)
    # The highest RSS so far (the kernel's high-water mark: peaks between samples too).
    hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$server/status)
    # Anonymous memory (the heap) apart from file pages mapped in (reclaimable).
    anon=$(awk '/RssAnon/ {print int($2 / 1024)}' /proc/$server/status)
    file=$(awk '/RssFile/ {print int($2 / 1024)}' /proc/$server/status)
    m=$(curl -sf "127.0.0.1:$port/metrics")
    ingested=$(awk '/^topk_ingest_events_total / {print $2}' <<<"$m")
    dups=$(awk '/^topk_duplicate_events_total/ {s += $2} END {print s + 0}' <<<"$m")
    # The dedup windows' tables (builds that export it; empty otherwise).
    dedup=$(awk '/^topk_dedup_window_bytes/ {s += $2; n++} END {if (n) print int(s / 1048576)}' <<<"$m")
    gauge() { awk -v n="$1" '$1 ~ "^"n"({|$)" {s += $2; k++} END {if (k) printf "%.0f", s}' <<<"$m"; }
    files=$(find "$work/data" -type f | wc -l)
    data_mb=$(du -sm "$work/data" | cut -f1)
    fds=$(ls /proc/$server/fd | wc -l)
    echo "$(( ($(date +%s) - start) / 60 )),$rss,$hwm,$anon,$file,$ingested,$dups,$dedup,$(gauge topk_flush_lag_events),$(gauge topk_archive_lag_batches),$(gauge topk_speed_lag_batches),$(gauge topk_watermark_lag_seconds),$files,$data_mb,$fds"
    sleep "$step"
done
