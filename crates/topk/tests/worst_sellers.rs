//! Worst sellers (`order=asc`) over a real `topk serve`: after a replay of generated data,
//! the K least-selling products of ended days, of a range and of a month equal a ground
//! truth computed from the input alone, in which every product of the catalog (every
//! product the input sold) that did not sell in the period counts as 0; a period that is
//! not exact is refused with a 400 that says why.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// The `k` least (by quantity, or revenue) over every catalog product, 0 where it did
/// not sell, ties by id.
fn bottom_truth(sums: &PeriodSums, catalog: &BTreeSet<String>, k: usize, revenue: bool) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = catalog
        .iter()
        .map(|id| {
            let (c, r) = sums.get(id).copied().unwrap_or_default();
            (id.clone(), if revenue { r } else { c })
        })
        .collect();
    all.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn rows(answer: &Value, revenue: bool) -> Vec<(String, i64)> {
    let field = if revenue { "revenue_cents" } else { "count" };
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["product_id"].as_str().unwrap().to_string(), r[field].as_i64().unwrap()))
        .collect()
}

#[test]
fn worst_sellers_of_ended_periods_equal_the_ground_truth_with_unsold_catalog_products_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "30000", "--products", "3000", "--seed", "23", "--start", "2026-10-01", "--days", "3"]);
    let data = dir.path().join("data");
    let out = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = serve(&data, &[]);

    let hourly = ground_truth(&input);
    let catalog: BTreeSet<String> = hourly.keys().map(|(p, _)| p.clone()).collect();
    let buckets = bucket_truth(&hourly);
    let sums_of = |g: &str, starts: &[i64]| period_sums(&buckets, g, starts);
    let days = ["2026-10-01", "2026-10-02", "2026-10-03"];
    let mut periods: Vec<(String, PeriodSums)> =
        days.iter().map(|d| (format!("granularity=day&start={d}"), sums_of("day", &[start_of(d)]))).collect();
    periods.push(("from=2026-10-01&to=2026-10-03".into(), sums_of("day", &[start_of(days[0]), start_of(days[1])])));
    periods.push(("granularity=month&start=2026-10".into(), sums_of("month", &[start_of("2026-10-01")])));
    let mut unsold_seen = 0;
    for (period, sums) in &periods {
        let unsold = catalog.iter().filter(|p| !sums.contains_key(*p)).count();
        unsold_seen = unsold_seen.max(unsold);
        for revenue in [false, true] {
            for k in [10, 1000] {
                let by = if revenue { "revenue" } else { "quantity" };
                let url = format!("{}/api/v1/top?{period}&k={k}&by={by}&order=asc", s.url);
                let (status, a) = get_json(&url);
                assert_eq!(status, 200, "{url}: {a}");
                assert_eq!((a["exact"].as_bool(), a["order"].as_str()), (Some(true), Some("asc")), "{url}");
                assert_eq!(rows(&a, revenue), bottom_truth(sums, &catalog, k, revenue), "{url}");
                let total: i64 = sums.values().map(|&(c, r)| if revenue { r } else { c }).sum();
                assert_eq!(a["total"].as_i64(), Some(total), "{url}");
            }
        }
    }
    assert!(unsold_seen > 100, "the input must leave catalog products unsold on some day ({unsold_seen})");

    // The current day is open: refused, with the reason. A bad order is a 400 too.
    let (status, a) = get_json(&format!("{}/api/v1/top?granularity=day&order=asc", s.url));
    assert_eq!(status, 400, "{a}");
    let why = a["error"].as_str().unwrap();
    assert!(why.contains("order=asc") && why.contains("(open)"), "{why}");
    let (status, a) = get_json(&format!("{}/api/v1/top?granularity=day&start=2026-10-01&order=sideways", s.url));
    assert_eq!((status, a["error"].as_str()), (400, Some(r#"order: "sideways" is not one of desc, asc"#)));
    // The default order is unchanged: best first.
    let (_, a) = get_json(&format!("{}/api/v1/top?granularity=day&start=2026-10-01&k=3", s.url));
    assert_eq!(a["order"], "desc");
}
