#!/usr/bin/env bash
# API latency under load (BENCHMARKS.md): wrk from a second process, 64 connections,
# 30 s per run, 3 runs per query, with the response cache on and off.
# Usage: scripts/api_latency.sh TOPK_BINARY DATA_DIR (seeded by the seed_store example);
# CACHES="false" runs only the uncached half, RUNS and SECS change the repetitions;
# QUERIES="name|query;name|query" replaces the queries, and the rest of the arguments
# are given to `topk serve` (e.g. --breakdowns 'country;country,category').
set -euo pipefail
bin=$1 data=$2 port=${PORT:-18300} secs=${SECS:-30} runs=${RUNS:-3}
shift 2
queries=(
    "closed day, top 10|granularity=day&start=2026-10-15&k=10"
    "90-day range, top 10|from=2026-08-03&to=2026-11-01&k=10"
)
if [ -n "${QUERIES:-}" ]; then IFS=';' read -r -a queries <<<"$QUERIES"; fi
for cache in ${CACHES:-true false}; do
    "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" --api-cache "$cache" "$@" >/dev/null 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null' EXIT
    until curl -sf "127.0.0.1:$port/healthz" >/dev/null; do sleep 0.2; done
    for q in "${queries[@]}"; do
        name=${q%%|*} url="http://127.0.0.1:$port/api/v1/top?${q#*|}"
        curl -sf "$url" >/dev/null # first answer computed once, outside the measurement
        for r in $(seq "$runs"); do
            wrk -t2 -c64 -d"${secs}s" --latency "$url" |
                awk -v name="$name" -v cache="$cache" -v r="$r" '
                    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
                    / 50%/ { p50 = ms($2) } / 99%/ { p99 = ms($2) } /Requests\/sec/ { rps = $2 }
                    END { printf "%s | cache %s | run %d | p50 %.2f ms | p99 %.2f ms | %.0f req/s\n", name, cache, r, p50, p99, rps }'
        done
    done
    kill $server
    wait $server 2>/dev/null || true
done
