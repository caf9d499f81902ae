//! Breakdowns end to end: a replay of generated sales (countries with their own
//! favourites, cities, categories, refunds, duplicates, late events) with four breakdown
//! sets; every (breakdown, granularity, bucket, product) row of the store equals a ground
//! truth computed from the file alone, and the API's filtered answers, `group_by`, the
//! dimension pickers and the errors answer from it. Then 100 000 distinct cities: at most
//! `breakdown_max_values` of them get lists, the rest count under `(other)`, and nothing
//! the pipeline holds grows with them.

mod common;

use std::collections::BTreeMap;

use common::*;

const SETS: [&str; 4] = ["country", "category", "city", "country,category"];
const DAY: &str = "2026-11-02";

/// The truth's top `k` of one breakdown of a bucket, by quantity.
fn truth_top(truth: &BucketSums, g: &str, start: i64, breakdown: &str, k: usize) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = truth
        .iter()
        .filter(|((tg, b, _), _)| tg == g && *b == start)
        .filter_map(|((_, _, p), (c, _))| {
            let (in_b, p) = p.split_once('\t').unwrap_or(("", p));
            (in_b == breakdown).then(|| (p.to_string(), *c))
        })
        .collect();
    rows.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    rows.truncate(k);
    rows
}

fn rows_of(a: &serde_json::Value) -> Vec<(String, i64)> {
    a["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {a}"))
        .iter()
        .map(|r| (r["product_id"].as_str().unwrap().to_string(), r["count"].as_i64().unwrap()))
        .collect()
}

#[test]
fn every_breakdown_is_exact_and_the_api_filters_groups_and_lists_values_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(
        &input,
        &[
            "--events",
            "60000",
            "--products",
            "2000",
            "--start",
            DAY,
            "--days",
            "2",
            "--seed",
            "15",
            "--refund-rate",
            "0.02",
            "--duplicate-rate",
            "0.01",
            "--late-rate",
            "0.01",
        ],
    );
    let data = dir.path().join("data");
    let sets = SETS.join(";");
    let out =
        topk_cmd().args(["replay", "--breakdowns", &sets]).arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let truth = bucket_truth(&truth_with(&input, &SETS));
    let breakdowns = truth.keys().filter(|(g, _, p)| g == "day" && p.contains('\t')).count();
    assert!(breakdowns > 10_000, "the truth has {breakdowns} day rows of breakdowns");
    let checked = assert_store_exact(&data.join("store.db"), &truth, 1000);
    assert_eq!(checked["day"], 2);

    let s = serve(&data, &["--breakdowns", &sets]);
    let api = format!("{}/api/v1", s.url);
    let day0 = start_of(DAY);
    // A filter picks one value's exact list; two pick a configured combination.
    for (filter, breakdown) in [
        ("country=DE", "country=DE"),
        ("category=toys", "category=toys"),
        ("city=Lyon", "city=Lyon"),
        ("country=FR&category=books", "country,category=FR|books"),
        ("country=(none)", "country=(none)"),
    ] {
        let (status, a) = get_json(&format!("{api}/top?granularity=day&start={DAY}&k=10&{filter}"));
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["exact"], true, "{filter}: {a}");
        assert_eq!(a["breakdown"], breakdown);
        assert_eq!(rows_of(&a), truth_top(&truth, "day", day0, breakdown, 10), "{filter}");
    }
    // Each country has its own favourites: Germany's list is not the global one.
    assert_ne!(truth_top(&truth, "day", day0, "country=DE", 5), truth_top(&truth, "day", day0, "", 5));
    // A range sums its buckets per value, as it does globally.
    let (_, a) = get_json(&format!("{api}/top?from={DAY}&to=2026-11-04&k=5&country=DE"));
    let mut two_days: BTreeMap<String, i64> = BTreeMap::new();
    for start in [day0, day0 + 86_400_000] {
        for (p, c) in truth_top(&truth, "day", start, "country=DE", usize::MAX) {
            *two_days.entry(p).or_default() += c;
        }
    }
    let mut want: Vec<(String, i64)> = two_days.into_iter().collect();
    want.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    want.truncate(5);
    assert_eq!((a["exact"].as_bool(), rows_of(&a)), (Some(true), want));

    // group_by: the top 3 of each of the day's 4 biggest countries, biggest first.
    let (status, g) = get_json(&format!("{api}/top?granularity=day&start={DAY}&k=3&group_by=country&groups=4"));
    assert_eq!(status, 200, "{g}");
    let mut totals: Vec<(String, i64)> = truth
        .iter()
        .filter(|((tg, b, p), _)| tg == "day" && *b == day0 && p.starts_with("country="))
        .fold(BTreeMap::<String, i64>::new(), |mut m, ((_, _, p), (c, _))| {
            *m.entry(p.split_once('\t').unwrap().0.to_string()).or_default() += c;
            m
        })
        .into_iter()
        .collect();
    totals.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    for (group, (key, total)) in groups.iter().zip(&totals) {
        assert_eq!((group["breakdown"].as_str().unwrap(), group["count"].as_i64().unwrap()), (key.as_str(), *total));
        assert_eq!(rows_of(&group["top"]), truth_top(&truth, "day", day0, key, 3), "{key}");
    }
    // With a filter: the categories of France.
    let (_, g) = get_json(&format!("{api}/top?granularity=day&start={DAY}&k=3&group_by=category&country=FR&groups=2"));
    for group in g["groups"].as_array().unwrap() {
        let key = group["breakdown"].as_str().unwrap();
        assert!(key.starts_with("country,category=FR|"), "{key}");
        assert_eq!(rows_of(&group["top"]), truth_top(&truth, "day", day0, key, 3), "{key}");
    }

    // The pickers' values, with their totals over the period; q narrows them.
    let (status, v) = get_json(&format!("{api}/dimensions/city?from={DAY}&to=2026-11-03&q=m"));
    assert_eq!(status, 200, "{v}");
    let values: Vec<(String, i64)> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["value"].as_str().unwrap().to_string(), x["count"].as_i64().unwrap()))
        .collect();
    let mut want: Vec<(String, i64)> = truth
        .iter()
        .filter(|((tg, b, p), _)| tg == "day" && *b == day0 && p.starts_with("city="))
        .fold(BTreeMap::<String, i64>::new(), |mut m, ((_, _, p), (c, _))| {
            *m.entry(p.split_once('\t').unwrap().0["city=".len()..].to_string()).or_default() += c;
            m
        })
        .into_iter()
        .filter(|(city, _)| city.to_lowercase().starts_with('m'))
        .collect();
    want.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    assert_eq!(values, want);
    assert!(values.iter().any(|(c, _)| c == "Munich"), "{values:?}");

    // A product's history within a breakdown.
    let (_, h) = get_json(&format!("{api}/products/p0000001?granularity=day&from={DAY}&to=2026-11-03&country=DE"));
    let want = truth_top(&truth, "day", day0, "country=DE", usize::MAX)
        .into_iter()
        .find(|(p, _)| p == "p0000001")
        .map_or(0, |(_, c)| c);
    assert_eq!(h["points"][0]["count"].as_i64(), Some(want), "{h}");

    // Filters that match no configured set say which ones are.
    let (status, e) = get_json(&format!("{api}/top?granularity=day&start={DAY}&city=Lyon&category=toys"));
    assert_eq!(status, 400);
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("city,category") && msg.contains("\"country,category\""), "{msg}");
    let (status, e) = get_json(&format!("{api}/dimensions/shoe"));
    assert_eq!(status, 400, "{e}");
    let (status, e) = get_json(&format!("{api}/top?granularity=day&start={DAY}&group_by=country&country=DE"));
    assert_eq!(status, 400, "{e}");
    let (_, b) = get_json(&format!("{api}/breakdowns"));
    assert_eq!(b["sets"], serde_json::json!(SETS));
}

#[test]
fn a_hundred_thousand_cities_get_at_most_max_values_lists_and_the_rest_count_under_other() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cities.ndjson");
    let mut text = String::new();
    for i in 0..100_000u32 {
        // A few big cities, then one sale in each of 100 000 distinct ones.
        let city = if i % 4 == 0 { format!("Big {}", i % 8) } else { format!("Town {i:06}") };
        text += &format!(
            "{{\"event_id\":\"c{i}\",\"ts\":\"2026-11-02T{:02}:{:02}:00Z\",\"product_id\":\"p{:03}\",\"price_cents\":100,\"city\":\"{city}\"}}\n",
            i / 4200 % 24,
            i % 60,
            i % 500,
        );
    }
    std::fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    let args = ["--breakdowns", "city", "--breakdown-max-values", "1000", "--speed-breakdown-memory-mb", "8"];
    let out = topk_cmd().arg("replay").args(args).arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = data.join("store.db");
    let rows = store_sums(&db);
    let day0 = start_of("2026-11-02");
    let values: std::collections::BTreeSet<&str> = rows
        .keys()
        .filter(|(g, b, _)| g == "day" && *b == day0)
        .filter_map(|(_, _, p)| p.split_once('\t').map(|(b, _)| b))
        .collect();
    assert_eq!(values.len(), 1001, "1000 cities and (other)");
    assert!(values.contains("city=(other)") && values.contains("city=Big 0"), "the big ones came first");
    // The cities partition the global counts: nothing is lost to the cap.
    let total = |f: &dyn Fn(&str) -> bool| -> i64 {
        rows.iter().filter(|((g, b, p), _)| g == "day" && *b == day0 && f(p)).map(|(_, (c, _))| c).sum()
    };
    assert_eq!(total(&|p| !p.contains('\t')), 100_000);
    assert_eq!(total(&|p| p.contains('\t')), 100_000);
    let admitted: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM breakdown_values WHERE dim_set = 'city'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(admitted, 1000);

    let s = serve(&data, &args);
    let api = format!("{}/api/v1", s.url);
    let (_, v) = get_json(&format!("{api}/dimensions/city?from=2026-11-02&to=2026-11-03&limit=1000"));
    assert_eq!(v["full"], true, "{v}");
    let (_, a) = get_json(&format!("{api}/top?granularity=day&start=2026-11-02&city=Town%20099999"));
    assert!(a["rows"].as_array().unwrap().is_empty(), "{a}");
    let note = a["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect::<Vec<_>>().join(" ");
    assert!(note.contains("(other)"), "{a}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap().text().unwrap();
    assert_eq!(sample(&metrics, "topk_breakdown_values{set=\"city\"}"), Some(1000.0), "{metrics}");
    assert_eq!(sample(&metrics, "topk_breakdown_full{set=\"city\"}"), Some(1.0));
}

/// At the speed layer's memory cap for breakdown sketches, a value new to an open bucket
/// counts under `(other)` there; its own answer says so instead of "no sales yet".
#[test]
fn a_value_counted_under_other_at_the_speed_memory_cap_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB holds the sketches of a few (bucket, value) pairs: most categories are refused.
    let args = ["--demo", "--demo-rate", "2000", "--demo-history-days", "0", "--speed-breakdown-memory-mb", "1"];
    let s = serve(
        &dir.path().join("data"),
        &[&args[..], &["--breakdowns", "category", "--flush-interval-ms", "200"]].concat(),
    );
    let categories = ["books", "toys", "electronics", "fashion", "home", "garden", "sports", "beauty"];
    let top = |category: &str| get_json(&format!("{}/api/v1/top?granularity=day&k=5&category={category}", s.url)).1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (told, counted) = loop {
        let answers: Vec<serde_json::Value> = categories.iter().map(|c| top(c)).collect();
        let counted = answers.iter().filter(|a| a["rows"].as_array().is_some_and(|r| !r.is_empty())).count();
        let told: Vec<&serde_json::Value> = answers
            .iter()
            .filter(|a| a["notes"].to_string().contains("the speed layer counts this value under (other)"))
            .collect();
        // Each category has its own list, or is told why not; some of each.
        if counted > 0 && !told.is_empty() && counted + told.len() == categories.len() {
            break (told.len(), counted);
        }
        assert!(std::time::Instant::now() < deadline, "a category was neither listed nor told why: {answers:?}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    // The refused values' sales are in (other)'s list.
    let other = top("(other)");
    assert!(other["rows"].as_array().is_some_and(|r| !r.is_empty()), "{told} told, {counted} listed: {other}");
}
