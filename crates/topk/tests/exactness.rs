//! What is labelled exact is exact: a replay of data that ends now leaves every bucket
//! that has not ended approximate (served by the speed layer, with bounds that hold), and
//! live sales, late sales and refunds that reach ended buckets re-roll them, after which
//! they are exact again and equal a ground truth computed from the input alone. (Once, the
//! end of a replay closed every bucket of its data: the current hour, day, month and year
//! were rolled up as exact, and then missed every live sale while saying `exact: true`.)

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeZone, Utc};
use common::*;
use serde_json::Value;

const LATENESS_MS: i64 = 60_000;
const GRANULARITIES: [&str; 5] = ["hour", "day", "week", "month", "year"];

fn get(url: &str) -> Value {
    let r = reqwest::blocking::get(url).unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The label of the `g` bucket starting at `start_ms` (as the truth keys it), for the API.
fn label(start_ms: i64) -> String {
    rfc3339(start_ms)
}

/// The top 10 of a truth bucket by quantity, ties by id.
fn top10(truth: &BucketSums, g: &str, start: i64) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = truth
        .range((g.to_string(), start, String::new())..)
        .take_while(|((tg, ts, _), _)| tg == g && *ts == start)
        .map(|((_, _, p), (c, _))| (p.clone(), *c))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(10);
    rows
}

/// Every bucket (granularity, start, end) the hourly truth touches.
fn buckets_of(hourly: &Sums) -> Vec<(String, i64, i64)> {
    let all = bucket_truth_ended_by(hourly, i64::MAX);
    let mut out: Vec<(String, i64)> = all.keys().map(|(g, s, _)| (g.clone(), *s)).collect();
    out.dedup();
    out.into_iter()
        .map(|(g, s)| {
            let end = Utc.timestamp_millis_opt(s).unwrap();
            let end = match g.as_str() {
                "hour" => end + chrono::Duration::hours(1),
                "day" => end + chrono::Duration::days(1),
                "week" => end + chrono::Duration::days(7),
                "month" => end.checked_add_months(chrono::Months::new(1)).unwrap(),
                _ => end.checked_add_months(chrono::Months::new(12)).unwrap(),
            };
            (g, s, end.timestamp_millis())
        })
        .collect()
}

/// Waits until every bucket is as the truth says: exact, with the true top 10 and total,
/// once it has ended (its end is behind the clock less the lateness: the batch layer may
/// take a moment); approximate, with bounds that hold, at every look before that.
fn assert_served_as_truth(url: &str, hourly: &Sums) {
    let truth = bucket_truth_ended_by(hourly, i64::MAX);
    let deadline = Instant::now() + Duration::from_secs(120);
    for (g, start, end) in buckets_of(hourly) {
        let want: Vec<(String, i64)> = top10(&truth, &g, start);
        let total: i64 = truth
            .range((g.clone(), start, String::new())..)
            .take_while(|((tg, ts, _), _)| *tg == g && *ts == start)
            .map(|(_, (c, _))| c)
            .sum();
        loop {
            let watermark = Utc::now().timestamp_millis() - LATENESS_MS;
            let a = get(&format!("{url}/api/v1/top?granularity={g}&start={}&k=10", label(start)));
            let rows: Vec<(String, i64, i64)> = a["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["product_id"].as_str().unwrap().to_string(),
                        r["count"].as_i64().unwrap(),
                        r["error_bound"].as_i64().unwrap(),
                    )
                })
                .collect();
            let want_exact = end <= watermark - 2_000;
            let ok = if end > watermark {
                // Never exact before it ends; every listed count within its bound of the truth.
                assert_eq!(a["exact"], false, "{g} {} has not ended but is served as exact: {a}", label(start));
                let true_count = |p: &str| truth.get(&(g.clone(), start, p.to_string())).map_or(0, |v| v.0);
                a["total"] == total && rows.iter().all(|(p, c, e)| (c - true_count(p)).abs() <= *e)
            } else {
                // Ended: exact once the batch layer has rolled it up (a moment after the end).
                want_exact
                    && a["exact"] == true
                    && a["total"] == total
                    && rows.iter().map(|(p, c, _)| (p.clone(), *c)).collect::<Vec<_>>() == want
            };
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{g} {} (ended: {}) never matched the truth {want:?}: {a}",
                label(start),
                end <= watermark
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn post(url: &str, body: &str) {
    let r =
        reqwest::blocking::Client::new().post(format!("{url}/api/v1/events")).body(body.to_string()).send().unwrap();
    let status = r.status();
    let reply: Value = r.json().unwrap();
    assert!(status.is_success() && reply["rejected_count"] == 0, "{status} {reply}");
}

#[test]
fn after_a_replay_ending_now_only_ended_buckets_are_exact_and_live_changes_re_roll_them() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp_millis();
    // 30 hours that end now: yesterday (ended) and today (open), and, depending on the
    // date, a week, month or year that ended or not.
    let start = now - 30 * 3_600_000;
    let input = dir.path().join("events.ndjson");
    let days = format!("{:.6}", 30.0 / 24.0);
    gen(
        &input,
        &["--events", "20000", "--products", "300", "--seed", "17", "--start", &rfc3339(start), "--days", &days],
    );
    let data = dir.path().join("data");
    let lateness = LATENESS_MS.to_string();
    let out = topk_cmd()
        .arg("replay")
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .args(["--allowed-lateness-ms", &lateness])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s =
        serve(&data, &["--allowed-lateness-ms", &lateness, "--idle-timeout-ms", "1000", "--flush-interval-ms", "200"]);
    let mut hourly = ground_truth(&input);
    assert_served_as_truth(&s.url, &hourly);

    // Live: a large sale now (the open hour, day, week, month and year), a late sale
    // and a refund for ended hours of yesterday.
    let now = Utc::now().timestamp_millis();
    let yesterday_10 = (now - 86_400_000).div_euclid(86_400_000) * 86_400_000 + 10 * 3_600_000;
    let lines = [
        format!(r#"{{"event_id":"live-1","ts":{now},"product_id":"live","quantity":100000,"price_cents":1}}"#),
        format!(
            r#"{{"event_id":"late-1","ts":{},"product_id":"late","quantity":99999,"price_cents":1}}"#,
            yesterday_10 + 60_000
        ),
        format!(
            r#"{{"event_id":"refund-1","kind":"refund","ts":{now},"sale_ts":{},"product_id":"late","quantity":-9,"price_cents":1}}"#,
            yesterday_10 + 120_000
        ),
    ];
    post(&s.url, &lines.join("\n"));
    for (product, hour, qty) in [("live", now, 100000), ("late", yesterday_10, 99999 - 9)] {
        let e = hourly.entry((product.to_string(), hour.div_euclid(3_600_000) * 3_600_000)).or_insert((0, 0));
        e.0 += qty;
        e.1 += qty;
    }
    // Every bucket above the changes: exact again where it ended (re-rolled, with the late
    // sale and the refund), approximate where it has not (with the live sale).
    assert_served_as_truth(&s.url, &hourly);
    let current = get(&format!("{}/api/v1/top?granularity=year&k=1", s.url));
    assert_eq!(
        (current["exact"].clone(), current["rows"][0]["product_id"].clone()),
        (Value::Bool(false), "live".into())
    );
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for (g, _, end) in buckets_of(&hourly) {
        if end <= Utc::now().timestamp_millis() - LATENESS_MS {
            *ended.entry(g).or_default() += 1;
        }
    }
    assert!(ended["hour"] >= 24 && ended["day"] >= 1, "ended buckets checked: {ended:?}");
    for g in GRANULARITIES {
        let a = get(&format!("{}/api/v1/top?granularity={g}&k=3", s.url));
        assert_eq!(a["open"], true);
        assert_eq!(a["exact"], false, "the current {g} is never exact");
        assert_eq!(a["rows"][0]["product_id"], "live", "the current {g} counts the live sale: {a}");
    }
}
