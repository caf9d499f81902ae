# Freshness of exact answers: how long after the watermark passes an hour's end `topk serve`
# has that hour's exact lists. Runs `topk serve --demo` with accelerated event time (an
# event-time hour every 3600/SPEEDUP s of the clock), samples the partitions' watermarks
# from /metrics every 0.5 s, and when it stops reads from the store when each hour's batch
# run committed. Prints every hour and p50/p99/max.
#
# usage: python3 scripts/exact_freshness.py TOPK_BINARY PORT [RATE] [SPEEDUP] [PRODUCTS] [HOURS]
#   defaults: 100000 events/s, 60x, 1,000,000 products, 6 event-time hours after the first
import os, re, signal, sqlite3, statistics, subprocess, sys, tempfile, time, urllib.request

binary, port = sys.argv[1], sys.argv[2]
defaults = ["100000", "60", "1000000", "6"]
rate, speedup, products, hours = (int(a) for a in (sys.argv[3:] + defaults[len(sys.argv[3:]):])[:4])
HOUR = 3_600_000
d = tempfile.mkdtemp(prefix="topk-fresh-")
srv = subprocess.Popen(
    [binary, "serve", "--demo", "--demo-rate", str(rate), "--demo-speedup", str(speedup),
     "--demo-products", str(products), "--demo-history-days", "0", "--data-dir", d, "--listen", f"127.0.0.1:{port}"],
    stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "serve.log"), "w"))
lag_re = re.compile(r'^topk_watermark_lag_seconds\{partition="(\d+)"\} (\S+)$', re.M)
ingested_re = re.compile(r'^topk_ingest_events_total (\S+)$', re.M)
samples = []  # (wall ms, low watermark ms)
try:
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz"); break
        except Exception: time.sleep(0.1)
    first_hour = None
    while True:
        wall = int(time.time() * 1000)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        lags = [float(v) for _, v in lag_re.findall(text) if v != "NaN"]
        # Before its first flush a partition's watermark is far in the past.
        if lags and max(lags) < 3 * 86400:
            low = wall - int(max(lags) * 1000)
            samples.append((wall, low))
            if first_hour is None:
                first_hour = low - low % HOUR + HOUR
            if low >= first_hour + (hours + 1) * HOUR:
                break
        time.sleep(0.5)
    # Let the last hours' runs finish.
    time.sleep(max(5.0, 3600 / speedup))
    m = ingested_re.search(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
finally:
    srv.send_signal(signal.SIGTERM); srv.wait()
db = sqlite3.connect(os.path.join(d, "store.db"))
rows = db.execute("""SELECT bucket_start, MIN(finished_at) FROM pipeline_runs WHERE task = 'top_lists'
    AND granularity = 'hour' AND status = 'success' GROUP BY bucket_start ORDER BY bucket_start""").fetchall()
fresh = []
for start, committed in rows:
    end = start + HOUR
    if not first_hour <= start < first_hour + hours * HOUR:
        continue
    passed = next((w for w, low in samples if low >= end), None)
    if passed is None:
        continue
    fresh.append((committed - passed) / 1000)
    print(f"hour {time.strftime('%Y-%m-%dT%H', time.gmtime(start / 1000))}: exact {fresh[-1]:.1f} s after the watermark passed it")
if not fresh:
    sys.exit("no hour was rolled up: see " + os.path.join(d, "serve.log"))
fresh.sort()
wall_s = (samples[-1][0] - samples[0][0]) / 1000
events = float(m.group(1)) if m else float("nan")
print(f"{len(fresh)} hours at {rate} events/s requested ({events / wall_s:.0f}/s ingested over {wall_s:.0f} s), "
      f"{speedup}x, {products} products: p50 {statistics.median(fresh):.1f} s, "
      f"p99 {fresh[min(len(fresh) - 1, int(len(fresh) * 0.99))]:.1f} s, max {fresh[-1]:.1f} s  (data in {d})")
