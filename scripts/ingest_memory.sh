#!/usr/bin/env bash
# Peak memory of `topk serve` under many concurrent large ingest requests (BENCHMARKS.md):
# N clients POST the same 60 MB NDJSON body at once; prints the server's peak RSS (the
# kernel's VmHWM) and its RSS once they are done, for N in $CLIENTS.
# Usage: scripts/ingest_memory.sh TOPK_BINARY
set -euo pipefail
bin=$1 port=${PORT:-18400}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
# ~60 MB of valid sales from the last day; product names padded so lines are ~400 bytes.
python3 - "$work/body.ndjson" <<'PY'
import sys, time
now = int(time.time() * 1000)
pad = "x" * 200
with open(sys.argv[1], "w") as f:
    i = 0
    while f.tell() < 60 << 20:
        f.write('{"event_id":"m%d","ts":%d,"product_id":"p%05d","quantity":1,"price_cents":499,'
                '"country":"DE","category":"toys","product_name":"Product %d %s"}\n'
                % (i, now - 86_400_000 + i % 86_000_000, i % 50000, i % 50000, pad))
        i += 1
PY
ls -l "$work/body.ndjson" | awk '{printf "body: %.1f MB\n", $5 / 1e6}'
for clients in ${CLIENTS:-16 32}; do
    rm -rf "$work/data"
    "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
    server=$!
    until curl -sf "127.0.0.1:$port/healthz" >/dev/null; do sleep 0.2; done
    start=$(date +%s.%N)
    pids=()
    for c in $(seq "$clients"); do
        curl -s -o "$work/reply-$c" -w "%{http_code}\n" --data-binary @"$work/body.ndjson" \
            "http://127.0.0.1:$port/api/v1/events" >"$work/status-$c" &
        pids+=($!)
    done
    wait "${pids[@]}"
    took=$(echo "$(date +%s.%N) - $start" | bc)
    ok=$(cat "$work"/status-* | grep -c '^200$' || true)
    peak=$(awk '/VmHWM/ {print $2}' /proc/$server/status)
    now=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
    printf "%d clients: %d × 200 in %.1f s; peak RSS %d MB, RSS after %d MB\n" \
        "$clients" "$ok" "$took" $((peak / 1024)) $((now / 1024))
    kill $server
    wait $server 2>/dev/null || true
    rm -f "$work"/status-* "$work"/reply-*
done
