#!/usr/bin/env bash
# Throughput through Kafka (BENCHMARKS.md): HTTP ingest into the events topic by one
# `topk api` process, then aggregation of the whole topic by 1 and by 2 `topk aggregator`
# processes (static partition halves), each run on fresh topics.
# Usage: scripts/kafka_throughput.sh TOPK_BINARY [EVENTS] — needs a Kafka broker
# (BROKERS, default 127.0.0.1:9092, e.g. tansu) and PostgreSQL (PG, default the local
# test database; a schema per run is created and dropped). RUNS repetitions (default 3).
# Aggregation is timed from the start of the aggregator processes until their flushes
# (every 200 ms) cover every event: start-up and recovery included.
set -euo pipefail
bin=$1 events=${2:-1000000} runs=${RUNS:-3}
brokers=${BROKERS:-127.0.0.1:9092} pg=${PG:-postgres://postgres@127.0.0.1:5432/test}
work=$(mktemp -d)
# Role processes are started from command substitutions (not jobs of this shell): their
# pids are kept in $work/pids.
stop_roles() { if [ -f "$work/pids" ]; then kill $(cat "$work/pids") 2>/dev/null || true; fi; rm -f "$work/pids"; sleep 0.5; }
trap 'stop_roles; rm -rf "$work"; true' EXIT
export PGOPTIONS="-c client_min_messages=warning"
"$bin" gen --events "$events" --products 100000 --start 2025-06-02 --days 2 --seed 7 --output "$work/events.ndjson" 2>/dev/null

now() { date +%s.%N; }
metric_sum() { curl -sf "$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }'; }
start_role() { # name role args... → prints the role's URL
    local name=$1 role=$2; shift 2
    "$bin" "$role" --config "$work/prod.toml" --listen 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
    echo $! >>"$work/pids"
    until grep -q http "$work/$name.out" 2>/dev/null; do sleep 0.05; done
    grep -o 'http://[0-9.:]*' "$work/$name.out"
}

for r in $(seq "$runs"); do
    for aggregators in 1 2; do
        schema="kbench_$$_${r}_$aggregators"
        psql "$pg" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema"
        cat >"$work/prod.toml" <<EOF
data_dir = "$work/data"
kafka_brokers = "$brokers"
kafka_prefix = "bench-$$-$r-$aggregators."
store = "$pg?options=-csearch_path%3D$schema"
partitions = 4
flush_interval_ms = 200
EOF
        api=$(start_role api api)
        t0=$(now)
        "$bin" replay "$work/events.ndjson" --server "$api" >/dev/null 2>&1
        t1=$(now)
        urls=()
        if [ "$aggregators" = 1 ]; then
            urls+=("$(start_role agg0 aggregator)")
        else
            urls+=("$(start_role agg0 aggregator --aggregate-partitions 0-1)")
            urls+=("$(start_role agg1 aggregator --aggregate-partitions 2-3)")
        fi
        t2=$(now)
        # Done when the flushes cover every event (duplicates in the input are dropped, so
        # count accepted + duplicates).
        while :; do
            done_events=0
            for u in "${urls[@]}"; do
                a=$(metric_sum "$u" topk_aggregated_events_total) d=$(metric_sum "$u" topk_duplicate_events_total)
                done_events=$((done_events + a + d))
            done
            [ "$done_events" -ge "$events" ] && break
            sleep 0.05
        done
        t3=$(now)
        awk -v r="$r" -v n="$events" -v k="$aggregators" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {
            printf "run %d | %d aggregator(s) | ingest %.0f events/s | aggregate %.0f events/s (%.2f s, incl. start and recovery)\n",
                r, k, n / (b - a), n / (d - c), d - c }'
        stop_roles
        rm -f "$work"/*.out
        psql "$pg" -qc "DROP SCHEMA IF EXISTS $schema CASCADE"
    done
done
