//! The serving API over a real `topk serve` process: every endpoint, the merge rule on a
//! range that is half exact and half approximate, and clear 400s for bad parameters.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use topk_core::time::{Bucket, Granularity};
use topk_store::{BatchStore, ProductSum, SpeedRow, SpeedStore, SpeedWrite, SqlStore};

/// Tuesday 2026-09-01.
const DAY0: i64 = 1_788_220_800_000;
const DAY: i64 = 86_400_000;

fn day(i: i64) -> Bucket {
    Bucket::containing(Granularity::Day, DAY0 + i * DAY)
}

/// Days 0 and 1 exact, days 2 and 3 approximate. Product `pN` sells `100 - N` a day on
/// exact days and `50 - N` (± 3) on approximate ones.
fn seed_store(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let mut store = SqlStore::open_sqlite(data.join("store.db")).unwrap();
    for d in 0..2 {
        let rows: Vec<ProductSum> = (0..50)
            .map(|n| ProductSum { product_id: format!("p{n:02}"), count: 100 - n, revenue_cents: (100 - n) * 250 })
            .collect();
        store.write_exact("seed", &[(day(d), String::new(), rows)], 1000, &[], &[]).unwrap();
    }
    let writes: Vec<SpeedWrite> = (2..4)
        .map(|d| SpeedWrite {
            breakdown: String::new(),
            bucket: day(d),
            rows: (0..20)
                .map(|n| SpeedRow {
                    product_id: format!("p{n:02}"),
                    count: 50 - n + 3,
                    error: 3,
                    revenue_cents: (50 - n) * 250,
                    updated_ms: topk_core::clock::now_ms() - 2_000,
                })
                .collect(),
            sketches: Vec::new(),
            finished: false,
            ended: false,
            unlisted_bound: 33,
            total_count: 1_000,
        })
        .collect();
    // The catalog holds every product that sold (the speed role writes it); one is named.
    let catalog: Vec<topk_store::Product> =
        (0..50).map(|n| topk_store::Product { product_id: format!("p{n:02}"), name: None, category: None }).collect();
    store.write_speed("speed", &writes, &[], None, &catalog).unwrap();
    store
        .upsert_products(&[topk_store::Product {
            product_id: "p00".into(),
            name: Some("Blue Kettle".into()),
            category: Some("kitchen".into()),
        }])
        .unwrap();
}

fn get(url: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(url).unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn every_endpoint_answers_and_bad_parameters_get_clear_400s() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed_store(&data);
    let s = serve(&data, &[]);
    let api = format!("{}/api/v1", s.url);

    // A closed, exact day: the stored list, exact, with shares of the exact total.
    let (status, a) = get(&format!("{api}/top?granularity=day&start=2026-09-01&k=3"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["exact"], true);
    let total: i64 = (0..50).map(|n| 100 - n).sum();
    assert_eq!(a["total"], total);
    let rows = a["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["product_id"], "p00");
    assert_eq!(rows[0]["name"], "Blue Kettle");
    assert_eq!(rows[0]["count"], 100);
    assert_eq!(rows[0]["source"], "batch");
    assert_eq!(rows[0]["error_bound"], 0);
    assert!((rows[0]["share"].as_f64().unwrap() - 100.0 / total as f64).abs() < 1e-12);
    assert_eq!(rows[2]["rank"], 3);

    // The merge rule: days 0–1 exact, 2–3 approximate.
    let (status, a) = get(&format!("{api}/top?from=2026-09-01&to=2026-09-05&k=5"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["exact"], false);
    let sources: Vec<&str> = a["buckets"].as_array().unwrap().iter().map(|b| b["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["batch", "batch", "speed", "speed"]);
    for (i, r) in a["rows"].as_array().unwrap().iter().enumerate() {
        let n = i as i64;
        assert_eq!(r["product_id"], format!("p{n:02}"));
        assert_eq!(r["count"], 2 * (100 - n) + 2 * (50 - n + 3), "exact sums plus the speed estimates");
        assert_eq!(r["error_bound"], 6, "the two approximate days' bounds add up");
        assert_eq!(r["source"], "speed");
        let truth = 2 * (100 - n) + 2 * (50 - n);
        let (c, e) = (r["count"].as_i64().unwrap(), r["error_bound"].as_i64().unwrap());
        assert!((c - truth).abs() <= e);
    }
    assert!(a["freshness"]["age_ms"].as_i64().unwrap() >= 2_000);
    assert!(a["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("speed layer's estimates")));
    // A product past the speed lists carries their unlisted bound for each open day.
    let (_, a) = get(&format!("{api}/top?from=2026-09-01&to=2026-09-05&k=40"));
    let p30 = a["rows"].as_array().unwrap().iter().find(|r| r["product_id"] == "p30").unwrap();
    assert_eq!((p30["count"].as_i64(), p30["error_bound"].as_i64()), (Some(2 * 70), Some(2 * 33)));

    // By revenue; k at both limits.
    let (status, a) = get(&format!("{api}/top?granularity=day&start=2026-09-02&by=revenue&k=1000"));
    assert_eq!(status, 200);
    assert_eq!(a["rows"].as_array().unwrap().len(), 50);
    assert_eq!(a["rows"][0]["revenue_cents"], 100 * 250);
    assert_eq!(get(&format!("{api}/top?granularity=day&start=2026-09-02&k=1")).1["rows"].as_array().unwrap().len(), 1);

    // The cache: the second identical request is a hit with the same body.
    let url = format!("{api}/top?granularity=day&start=2026-09-01&k=7");
    let first = reqwest::blocking::get(&url).unwrap();
    assert_eq!(first.headers()["x-cache"], "miss");
    assert_eq!(first.headers()["cache-control"], "max-age=60", "exact answers are cached long");
    let first = first.text().unwrap();
    let second = reqwest::blocking::get(&url).unwrap();
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(second.text().unwrap(), first);
    assert_eq!(serde_json::from_str::<Value>(&first).unwrap()["open"], false);
    // The current day is open: cached for a second only, whatever its source.
    let today = reqwest::blocking::get(format!("{api}/top?granularity=day")).unwrap();
    assert_eq!(today.headers()["cache-control"], "max-age=1");
    assert_eq!(today.json::<Value>().unwrap()["open"], true);

    // Product history: per day, exact or approximate, with rank.
    let (status, h) = get(&format!("{api}/products/p01?granularity=day&from=2026-09-01&to=2026-09-06"));
    assert_eq!(status, 200, "{h}");
    let points = h["points"].as_array().unwrap();
    let got: Vec<(&str, i64, i64, Option<i64>)> = points
        .iter()
        .map(|p| {
            (
                p["source"].as_str().unwrap(),
                p["count"].as_i64().unwrap(),
                p["error_bound"].as_i64().unwrap(),
                p["rank"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("batch", 99, 0, Some(2)),
            ("batch", 99, 0, Some(2)),
            ("speed", 52, 3, Some(2)),
            ("speed", 52, 3, Some(2)),
            ("none", 0, 0, None)
        ]
    );
    assert_eq!(h["product_id"], "p01");
    // Every granularity has a default range that is accepted.
    for g in ["hour", "day", "week", "month", "year"] {
        let (status, h) = get(&format!("{api}/products/p01?granularity={g}"));
        assert_eq!(status, 200, "{g}: {h}");
        assert!(!h["points"].as_array().unwrap().is_empty(), "{g}");
    }

    // Search by id prefix and by name prefix (case-insensitive).
    let (_, found) = get(&format!("{api}/products?q=blue%20k"));
    assert_eq!(found["products"][0]["product_id"], "p00");
    assert_eq!(found["products"][0]["category"], "kitchen");
    let (_, found) = get(&format!("{api}/products?q=p0"));
    assert!(found["products"].as_array().unwrap().iter().any(|p| p["product_id"] == "p00"));

    // Buckets: which exist and which are exact.
    let (status, b) = get(&format!("{api}/buckets?granularity=day"));
    assert_eq!(status, 200);
    let listed: Vec<(&str, &str)> = b["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["label"].as_str().unwrap(), b["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("2026-09-01", "batch"), ("2026-09-02", "batch"), ("2026-09-03", "speed"), ("2026-09-04", "speed")]
    );

    // Movers of an approximate day against an exact one: every product fell by 50 (listed:
    // 50 - N ± 3 after 100 - N); each change carries its bound, and the reply says why
    // it is not exact.
    let (status, m) = get(&format!("{api}/movers?granularity=day&start=2026-09-03&direction=down&k=50"));
    assert_eq!(status, 200, "{m}");
    assert_eq!((m["exact"].as_bool(), m["baseline_from"].as_str()), (Some(false), Some("2026-09-02T00:00:00.000Z")));
    assert!(m["notes"][0].as_str().unwrap().contains("speed layer's estimates"), "{m}");
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 50, "every product fell");
    for r in rows {
        let n: i64 = r["product_id"].as_str().unwrap()[1..].parse().unwrap();
        let (change, error) = (r["change"].as_i64().unwrap(), r["change_error"].as_i64().unwrap());
        assert_eq!(r["then"].as_i64(), Some(100 - n), "{r}");
        if n < 20 {
            assert!((change + 50).abs() <= error && error == 3, "{r}");
        } else {
            assert_eq!(error, 33, "unlisted on the speed day: its bucket's unlisted bound: {r}");
        }
    }

    // Lists as CSV: a header line, then the JSON rows' fields, by parameter or by Accept.
    let client = reqwest::blocking::Client::new();
    let (_, json) = get(&format!("{api}/top?granularity=day&start=2026-09-02&k=5"));
    for (query, accept) in [("&format=csv", "*/*"), ("", "text/csv")] {
        let r = client
            .get(format!("{api}/top?granularity=day&start=2026-09-02&k=5{query}"))
            .header("accept", accept)
            .send()
            .unwrap();
        assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
        let text = r.text().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "rank,product_id,name,count,error_bound,revenue_cents,share,source,previous_rank,rank_change"
        );
        assert_eq!(lines.len(), 6, "{text}");
        for (line, row) in lines[1..].iter().zip(json["rows"].as_array().unwrap()) {
            let cells: Vec<&str> = line.split(',').collect();
            let want = [
                row["rank"].to_string(),
                row["product_id"].as_str().unwrap().to_string(),
                row["name"].as_str().unwrap_or("").to_string(),
                row["count"].to_string(),
                row["error_bound"].to_string(),
                row["revenue_cents"].to_string(),
                row["share"].to_string(),
                row["source"].as_str().unwrap().to_string(),
                row["previous_rank"].to_string(),
                row["rank_change"].to_string(),
            ];
            assert_eq!(cells, want, "{line}");
        }
    }
    let r = client
        .get(format!("{api}/movers?granularity=day&start=2026-09-03&direction=down&k=3&format=csv"))
        .send()
        .unwrap();
    let text = r.text().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "rank,product_id,name,now,then,change,change_error,relative_change,rank_now,rank_then,entered,left,source"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].starts_with("1,p20,,0,80,-80,33,-1,,21,false,false,speed"), "{text}");
    let (status, e) = get(&format!("{api}/top?granularity=day&format=xml"));
    assert_eq!((status, e["error"].as_str()), (400, Some(r#"format: "xml" is not one of json, csv"#)));

    // The OpenAPI document lists every route.
    let (status, doc) = get(&format!("{api}/openapi.json"));
    assert_eq!(status, 200);
    for path in [
        "/api/v1/top",
        "/api/v1/movers",
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/buckets",
        "/api/v1/events",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    // All of them, and each one it lists is served (the router's fallback never answers):
    // only the document itself and the dashboard's page and assets are left out.
    let mut listed: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "/api/v1/breakdowns",
            "/api/v1/buckets",
            "/api/v1/dimensions/{name}",
            "/api/v1/events",
            "/api/v1/movers",
            "/api/v1/products",
            "/api/v1/products/{id}",
            "/api/v1/projection",
            "/api/v1/sources/kafka",
            "/api/v1/sources/kafka/resume",
            "/api/v1/sources/{id}",
            "/api/v1/top",
            "/api/v1/trends",
            "/healthz",
            "/metrics",
            "/readyz",
        ]
    );
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let url = format!("{}{}", s.url, path.replace("{id}", "p01").replace("{name}", "country"));
        for method in methods.as_object().unwrap().keys() {
            let r = client.request(method.to_uppercase().parse().unwrap(), &url).send().unwrap();
            let status = r.status();
            let body = r.text().unwrap();
            assert!(
                status != 405 && !body.contains("no such endpoint"),
                "{method} {path} is in the document but not served: {status} {body}"
            );
        }
    }

    // Bad parameters: 400 with a message that names the problem.
    let bad = [
        ("top?granularity=fortnight", "granularity"),
        ("top?from=2026-09-05&to=2026-09-01", "from must be before to"),
        ("top?from=2026-09-01&to=2026-09-01", "from must be before to"),
        ("top?granularity=day&k=0", "k"),
        ("top?granularity=day&k=100000", "k"),
        ("top?granularity=day&k=ten", "k"),
        ("top?from=2000-01-01&to=2020-01-01", "at most 1830 days"),
        ("top?from=yesterday&to=2026-09-01", "from"),
        ("top?from=2026-13-45&to=2026-09-01", "from"),
        ("top?from=2026-09-01T10:30:00Z&to=2026-09-02", "hour"),
        ("top?from=2026-09-01", "both from and to"),
        ("top?granularity=day&start=2026-09-01T05", "start"),
        ("top?granularity=week&start=2026-09-01", "week"),
        ("top?start=2026-09-01", "start needs a granularity"),
        ("top?granularity=day&from=2026-09-01&to=2026-09-02", "not both"),
        ("top?granularity=day&by=price", "by"),
        ("top?granularity=day&limit=3", "unknown parameter"),
        ("top?granularity=day&k=3&k=4", "twice"),
        ("top", "give granularity"),
        ("products", "q"),
        ("products?q=p&limit=0", "limit"),
        ("products/p01?granularity=hour&from=2026-01-01&to=2026-09-01", "coarser granularity"),
        ("products/p01?from=garbage", "from"),
        ("buckets", "granularity"),
    ];
    for (query, expect) in bad {
        let (status, body) = get(&format!("{api}/{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"].as_str().unwrap_or_else(|| panic!("{query}: no error message in {body}"));
        assert!(message.contains(expect), "{query}: {message:?} should mention {expect:?}");
    }

    // Metrics: API latency by route, and the role gauges.
    let text = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap().text().unwrap();
    for needle in [
        "topk_api_request_duration_seconds_count{route=\"/api/v1/top\",status=\"200\"}",
        "topk_api_request_duration_seconds_count{route=\"/api/v1/top\",status=\"400\"}",
        "topk_flush_lag_events{partition=\"0\"}",
        "topk_ingest_events_total 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics:\n{text}");
    }
    // No event yet: no watermark, so the gauge has no sample (rather than 56 years); an
    // empty family is left out altogether, as the Prometheus clients do.
    assert!(!text.contains("topk_watermark_lag_seconds"), "{text}");

    // The sample Grafana dashboard and alert rules use only metrics that exist (those of
    // the Kafka source: see the production test of the source; the projection's: see its
    // test). A family without samples is not exported, so first there is one of
    // everything: a batch run, a scored bucket, an accepted and a rejected event, a
    // watermark.
    let now = topk_core::clock::now_ms();
    let mut store = SqlStore::open_sqlite(data.join("store.db")).unwrap();
    let run = store.start_run("rollup", day(1), 1, now).unwrap();
    store.finish_run(run, topk_store::RunStatus::Success, Some(50), None, now + 40).unwrap();
    let scored = topk_core::accuracy::Accuracy {
        precision_at_10: 1.0,
        precision_at_100: 0.9,
        max_relative_error: 0.01,
        mean_relative_error: 0.001,
        bound_coverage: 1.0,
    };
    store.record_accuracy(day(1), &scored, now).unwrap();
    drop(store);
    let body = format!("{{\"event_id\":\"m1\",\"ts\":{now},\"product_id\":\"p01\"}}\nnot json\n");
    let r = reqwest::blocking::Client::new().post(format!("{api}/events")).body(body).send().unwrap();
    assert_eq!(r.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap().text().unwrap();
        if text.contains("topk_watermark_lag_seconds{") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for file in SAMPLE_MONITORING {
        let names = metric_names_used(file);
        assert!(names.len() >= 8, "{file}: {names:?}");
        for name in names.iter().filter(|n| !source_only(n) && !projection_only(n)) {
            assert!(exports(&text, name), "{file} uses {name}, which /metrics does not export:\n{text}");
        }
    }
}

#[test]
fn ingested_names_fill_the_catalog_and_rejects_are_counted_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(&dir.path().join("data"), &[]);
    let ts = topk_core::clock::now_ms();
    let body = format!(
        "{{\"event_id\":\"e1\",\"ts\":{ts},\"product_id\":\"sku-1\",\"price_cents\":500,\"product_name\":\"Red Teapot\",\"category\":\"kitchen\"}}\n\
         {{\"event_id\":\"e2\",\"ts\":{ts},\"product_id\":\"sku-2\",\"price_cents\":-5}}\n\
         not json\n"
    );
    let r = reqwest::blocking::Client::new().post(format!("{}/api/v1/events", s.url)).body(body).send().unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().unwrap();
    assert_eq!(report["accepted"], 1);
    assert_eq!(report["rejected_count"], 2);
    assert_eq!(report["rejected_by_field"]["price_cents"], 1, "{report}");
    assert_eq!(report["rejected_by_field"]["event"], 1, "{report}");
    // The catalog is written in the background, off the ingest path.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        let (_, found) = get(&format!("{}/api/v1/products?q=red", s.url));
        if found["products"].as_array().is_some_and(|p| !p.is_empty()) || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(found["products"][0]["product_id"], "sku-1", "{found}");
    assert_eq!(found["products"][0]["category"], "kitchen");
    let text = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap().text().unwrap();
    assert!(text.contains("topk_ingest_events_total 1\n"), "{text}");
    assert!(text.contains("topk_ingest_rejected_total{field=\"price_cents\"} 1\n"), "{text}");
}

#[test]
fn every_api_error_is_json_and_any_bucket_label_can_end_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed_store(&data);
    let s = serve(&data, &[]);
    let api = format!("{}/api/v1", s.url);
    let client = reqwest::blocking::Client::new();
    let json_error = |r: reqwest::blocking::Response, status: u16, needle: &str| {
        assert_eq!(r.status().as_u16(), status);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: Value = r.json().unwrap();
        let message = body["error"].as_str().unwrap_or_else(|| panic!("no error in {body}"));
        assert!(message.contains(needle), "{message:?} should mention {needle:?}");
    };
    // Errors axum produces itself (undecodable paths, unknown routes, wrong methods) are
    // JSON too, not plain text or an empty body.
    json_error(client.get(format!("{api}/products/%FF")).send().unwrap(), 400, "UTF-8");
    json_error(client.get(format!("{api}/sources/abc")).send().unwrap(), 400, "");
    json_error(client.get(format!("{api}/nope")).send().unwrap(), 404, "no such endpoint: GET /api/v1/nope");
    json_error(client.post(format!("{api}/top")).send().unwrap(), 405, "POST is not allowed on /api/v1/top");
    // A product never seen is a 404, not a history of zeros; ids follow the ingest rules.
    json_error(client.get(format!("{api}/products/never-sold")).send().unwrap(), 404, "never seen");
    let long = "x".repeat(129);
    json_error(client.get(format!("{api}/products/{long}")).send().unwrap(), 400, "at most 128");
    // Range ends: any bucket label on a boundary, for any granularity.
    let (status, a) = get(&format!("{api}/top?from=2026-09&to=2026-10&k=3"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["from"].as_str(), a["to"].as_str()),
        (Some("2026-09-01T00:00:00.000Z"), Some("2026-10-01T00:00:00.000Z"))
    );
    let (status, a) = get(&format!("{api}/top?from=2026-W36&to=2026-09-03&k=3"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["from"], "2026-08-31T00:00:00.000Z");
    let (status, h) = get(&format!("{api}/products/p01?granularity=year&from=2026&to=2027"));
    assert_eq!((status, h["points"].as_array().unwrap().len()), (200, 1), "{h}");
    let (status, e) = get(&format!("{api}/top?granularity=hour&start=2026-09-01"));
    assert_eq!(
        (status, e["buckets"][0]["label"].as_str()),
        (200, Some("2026-09-01T00")),
        "a date is its first hour: {e}"
    );
    let (_, e) = get(&format!("{api}/top?granularity=day&start=2026-09-01T05"));
    assert!(e["error"].as_str().unwrap().contains("this is an hour label; a day bucket"), "{e}");
    // The favicon is there.
    let r = client.get(format!("{}/favicon.ico", s.url)).send().unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()), (200, "image/svg+xml"));
}
