//! Projections over a real `topk serve`: three weeks of generated history with a daily
//! and weekly rhythm and today's ended hours replayed, the open hour's sales posted over
//! HTTP; the projection of today equals what is counted (checked against a ground truth
//! computed from the input) scaled by the share of the day's volume that the history's
//! hours of the week expect by then (computed here, independently).

mod common;

use std::collections::BTreeMap;

use common::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Monday 00:00 UTC is hour 0 of the week.
fn hour_of_week(ms: i64) -> usize {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    (t.weekday().num_days_from_monday() * 24 + t.hour()) as usize
}

#[test]
fn the_projection_of_today_scales_what_is_counted_by_the_shape_of_the_same_hours_in_history() {
    let dir = tempfile::tempdir().unwrap();
    // In a day's first minutes yesterday's last hour would still wait for late events
    // (5 minutes): history would be one hour short. Start after them instead.
    let into_day = chrono::Utc::now().timestamp_millis() % DAY;
    if into_day < 7 * 60_000 {
        std::thread::sleep(std::time::Duration::from_millis((7 * 60_000 - into_day) as u64));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let (hour, today) = (now / HOUR * HOUR, now / DAY * DAY);
    let first = today - 21 * DAY;
    // The history and today's ended hours, replayed; the open hour's sales, posted (and
    // the hour before's, while the batch layer may still wait for its late events).
    let split = if now - hour < 6 * 60_000 { hour - HOUR } else { hour };
    let past = dir.path().join("past.ndjson");
    let days = format!("{}", (split - first) as f64 / DAY as f64);
    gen(
        &past,
        &["--events", "120000", "--products", "300", "--seed", "7", "--seasonality", "0.6"]
            .iter()
            .copied()
            .chain(["--start", &rfc3339(first), "--days", &days])
            .collect::<Vec<_>>(),
    );
    let open = dir.path().join("open.ndjson");
    let open_days = format!("{}", ((now - split - 1_000).max(1)) as f64 / DAY as f64);
    gen(
        &open,
        &["--events", "400", "--products", "300", "--seed", "8", "--start", &rfc3339(split), "--days", &open_days],
    );
    let data = dir.path().join("data");
    let out = topk_cmd().arg("replay").arg(&past).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = serve(&data, &[]);
    let body = std::fs::read(&open).unwrap();
    let r = reqwest::blocking::Client::new().post(format!("{}/api/v1/events", s.url)).body(body).send().unwrap();
    assert_eq!(r.status(), 200);

    let mut truth = ground_truth(&past);
    truth.extend(ground_truth(&open));
    let posted: i64 = truth.iter().filter(|((_, h), _)| *h >= split).map(|(_, v)| v.0).sum();
    // Wait for the speed layer to count what was posted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let posted_range = format!("from={}&to={}", rfc3339(split), rfc3339(hour + HOUR));
    loop {
        let (_, top) = get_json(&format!("{}/api/v1/top?{posted_range}", s.url));
        if top["total"] == posted {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the open hour was not counted: {top}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let (status, p) = get_json(&format!("{}/api/v1/projection?granularity=day&k=10", s.url));
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["kind"], "projected");
    assert_eq!(p["from"], rfc3339(today), "{p}");
    let as_of = chrono::DateTime::parse_from_rfc3339(p["as_of"].as_str().unwrap()).unwrap().timestamp_millis();
    assert!((now..now + 60_000).contains(&as_of), "{p}");

    // The shape: the mean total of each hour of the week over the three weeks before today.
    let mut hourly: BTreeMap<i64, i64> = BTreeMap::new();
    for ((_, h), (c, _)) in &truth {
        *hourly.entry(*h).or_default() += c;
    }
    let mut slots = vec![Vec::new(); 168];
    for (h, c) in hourly.range(first..today) {
        assert!(*c > 0, "every hour of the history has sales");
        slots[hour_of_week(*h)].push(*c as f64);
    }
    assert!(slots.iter().all(|s| s.len() == 3), "every hour of the week seen three times");
    let profile: Vec<f64> = slots.iter().map(|s| s.iter().sum::<f64>() / s.len() as f64).collect();
    let volume = |to: i64| -> f64 {
        (0..24)
            .map(|i| today + i * HOUR)
            .map(|h| profile[hour_of_week(h)] * ((to.min(h + HOUR) - h).max(0) as f64 / HOUR as f64))
            .sum()
    };
    let share = volume(as_of) / volume(today + DAY);
    let got_share = p["expected_share"].as_f64().unwrap();
    assert!((got_share - share).abs() < 1e-9, "expected share {got_share}, computed {share}");
    assert_eq!(p["method"]["history_weeks"], 3);
    assert_eq!(p["method"]["complete_weeks"], 3);
    assert!(p["method"]["shape_spread"].as_f64().unwrap() > 0.0, "{p}");

    // Counted so far: today's ended hours exactly, the open hour within its bound.
    let mut so_far: BTreeMap<&str, i64> = BTreeMap::new();
    for ((id, h), (c, _)) in truth.range((String::new(), today)..) {
        if *h >= today {
            *so_far.entry(id.as_str()).or_default() += c;
        }
    }
    let rows = p["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    let mut previous = i64::MAX;
    for r in rows {
        let id = r["product_id"].as_str().unwrap();
        let (counted, bound) = (r["counted"].as_i64().unwrap(), r["counted_error_bound"].as_i64().unwrap());
        let truth = so_far.get(id).copied().unwrap_or(0);
        assert!((counted - truth).abs() <= bound, "{id}: counted {counted} ± {bound}, truly {truth}");
        let projected = r["projected"].as_i64().unwrap();
        assert!((projected - (counted as f64 / share).round() as i64).abs() <= 1, "{r}");
        let (low, high) = (r["projected_low"].as_i64().unwrap(), r["projected_high"].as_i64().unwrap());
        assert!(low <= projected && projected < high && low >= counted - bound, "{r}");
        assert!(projected <= previous, "ranked by projection: {r}");
        previous = projected;
    }
    // The counted total is the day's so far; the projected one scales it the same way.
    let counted_total: i64 = so_far.values().sum();
    assert_eq!(p["counted_total"], counted_total, "{p}");
    assert_eq!(p["projected_total"], (counted_total as f64 / share).round() as i64, "{p}");
    assert!(p["notes"][0].as_str().unwrap().starts_with("projected:"), "{p}");

    // Every open granularity answers; ended and future periods are refused, saying why.
    for g in ["hour", "week", "month", "year"] {
        let (status, p) = get_json(&format!("{}/api/v1/projection?granularity={g}", s.url));
        assert_eq!(status, 200, "{g}: {p}");
        let share = p["expected_share"].as_f64().unwrap();
        assert!(share > 0.0 && share <= 1.0, "{g}: {p}");
    }
    let yesterday = chrono::DateTime::from_timestamp_millis(today - DAY).unwrap().format("%Y-%m-%d").to_string();
    let (status, e) = get_json(&format!("{}/api/v1/projection?granularity=day&start={yesterday}", s.url));
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("has ended"), "{e}");
    let tomorrow = chrono::DateTime::from_timestamp_millis(today + DAY).unwrap().format("%Y-%m-%d").to_string();
    let (status, e) = get_json(&format!("{}/api/v1/projection?granularity=day&start={tomorrow}", s.url));
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("has not started"), "{e}");
    let (status, e) = get_json(&format!("{}/api/v1/projection", s.url));
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("granularity"), "{e}");

    // Trends (the rows' sparklines): each product's units per day, exact days as counted.
    let ids = ["p0000001", "p0000002", "p0000150"];
    let (status, t) =
        get_json(&format!("{}/api/v1/trends?ids={}&granularity=day&to={}", s.url, ids.join(","), rfc3339(today)));
    assert_eq!(status, 200, "{t}");
    let buckets = t["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 12, "{t}");
    assert_eq!(buckets[11]["start"], rfc3339(today - DAY), "{t}");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(t["products"][i]["product_id"], *id);
        for (j, b) in buckets.iter().enumerate() {
            let start = today - (12 - j as i64) * DAY;
            let want: i64 = truth.range((id.to_string(), start)..(id.to_string(), start + DAY)).map(|(_, v)| v.0).sum();
            assert_eq!(b["source"], "batch", "{t}");
            assert_eq!(t["products"][i]["counts"][j], want, "{id} on day {j}: {t}");
        }
    }
    for bad in ["ids=", "ids=p1&granularity=minute", "ids=p1&from=2026-01-01&to=2026-12-01&granularity=hour"] {
        let (status, e) = get_json(&format!("{}/api/v1/trends?{bad}", s.url));
        assert_eq!(status, 400, "{bad}: {e}");
    }

    // The backtest: every ended day projected at 25, 50 and 75 % of it from the exact
    // hours before, scored against its end.
    let out = topk_cmd()
        .args(["accuracy", "--projections", "--json", "--limit", "14"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scored: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(scored.len(), 14 * 3, "{scored:?}");
    let at_half: Vec<&serde_json::Value> = scored.iter().filter(|t| t["at"] == 0.5).collect();
    assert_eq!(at_half.len(), 14);
    for t in &scored {
        assert!([0.25, 0.5, 0.75].contains(&t["at"].as_f64().unwrap()), "{t}");
        for f in ["top10_held", "coverage"] {
            assert!((0.0..=1.0).contains(&t[f].as_f64().unwrap()), "{t}");
        }
        assert!(t["history_weeks"].as_u64().unwrap() >= 1, "{t}");
    }
    let held = at_half.iter().map(|t| t["top10_held"].as_f64().unwrap()).sum::<f64>() / 14.0;
    let ape = at_half.iter().map(|t| t["median_ape"].as_f64().unwrap()).sum::<f64>() / 14.0;
    assert!(held >= 0.7 && ape < 0.2, "at half of a day: top 10 held {held}, median APE {ape}");
    let table =
        topk_cmd().args(["accuracy", "--projections", "--limit", "14"]).arg("--data-dir").arg(&data).output().unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("at 50 %: 14 buckets, top 10 held"), "{table}");

    // And in /metrics: yesterday's scores, as the backtest has them.
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap().text().unwrap();
    let yesterday_scores = scored.iter().find(|t| t["at"] == 0.5).unwrap();
    let series = "topk_projection_top10_held{granularity=\"day\",at=\"0.50\"}";
    assert_eq!(sample(&metrics, series), yesterday_scores["top10_held"].as_f64(), "{series}:\n{metrics}");
    for name in ["topk_projection_median_ape", "topk_projection_interval_coverage"] {
        assert!(exports(&metrics, name), "{name} missing:\n{metrics}");
    }
    // The sample Grafana board's projection panel uses only these.
    for name in SAMPLE_MONITORING.into_iter().flat_map(metric_names_used).filter(|n| projection_only(n)) {
        assert!(exports(&metrics, &name), "the sample monitoring uses {name}, not exported:\n{metrics}");
    }

    // As CSV: the same rows, counted and projected columns named so.
    let csv = reqwest::blocking::get(format!("{}/api/v1/projection?granularity=day&k=10&format=csv", s.url))
        .unwrap()
        .text()
        .unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "rank,product_id,name,counted,counted_error_bound,counted_revenue_cents,projected,projected_low,projected_high,projected_revenue_cents,source"
    );
    assert_eq!(lines.count(), 10);
}
