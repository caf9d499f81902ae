# Freshness: time from an HTTP ingest to its effect in speed_table.
import json, sqlite3, subprocess, sys, tempfile, time, urllib.request, os, statistics
binary, port = sys.argv[1], sys.argv[2]
d = tempfile.mkdtemp()
srv = subprocess.Popen([binary, "serve", "--demo", "--data-dir", d, "--listen", f"127.0.0.1:{port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz"); break
        except Exception: time.sleep(0.1)
    time.sleep(5)  # let demo traffic run
    db = sqlite3.connect(os.path.join(d, "store.db"))
    lat = []
    for i in range(60):
        pid = f"fresh-{i}"
        now = int(time.time() * 1000)
        body = json.dumps({"event_id": f"f{i}-{now}", "ts": now, "product_id": pid, "quantity": 100000}).encode()
        t0 = time.time()
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/events", data=body, method="POST"))
        while True:
            r = db.execute("SELECT 1 FROM speed_table WHERE product_id = ? AND granularity = 'hour'", (pid,)).fetchone()
            if r: break
            time.sleep(0.01)
        lat.append(time.time() - t0)
        time.sleep(0.2)
    lat.sort()
    print(f"freshness over {len(lat)} probes under demo load: p50 {statistics.median(lat)*1000:.0f} ms, "
          f"p99 {lat[int(len(lat)*0.99)-1]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
finally:
    srv.terminate(); srv.wait()
