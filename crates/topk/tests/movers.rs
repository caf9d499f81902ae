//! Movers over a real `topk serve`: after a replay of generated data in two years (with
//! refunds and duplicate deliveries), the biggest gains and drops of ended days and
//! ranges — against the previous period, the same period a year earlier and an explicit
//! range, by quantity and revenue, absolute and relative — equal a ground truth computed
//! from the input alone.

mod common;

use std::collections::BTreeSet;

use common::*;

/// The documented rule on the truth: products that moved the asked way (and pass
/// min_count: in either period for absolute change, in the baseline for relative), by
/// change, ties by id.
fn movers_truth(now: &PeriodSums, then: &PeriodSums, q: &Query) -> Vec<(String, i64, i64)> {
    let ids: BTreeSet<&String> = now.keys().chain(then.keys()).collect();
    let v = |m: &PeriodSums, id: &str| m.get(id).map_or(0, |&(c, r)| if q.revenue { r } else { c });
    let mut rows: Vec<(String, i64, i64)> = ids
        .into_iter()
        .map(|id| (id.clone(), v(now, id), v(then, id)))
        .filter(|(_, n, t)| if q.up { n > t } else { n < t })
        .filter(|(_, n, t)| if q.relative { *t >= q.min_count.max(1) } else { *n.max(t) >= q.min_count })
        .collect();
    let key = |(_, n, t): &(String, i64, i64)| if q.relative { (n - t) as f64 / *t as f64 } else { (n - t) as f64 };
    rows.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        (if q.up { kb.total_cmp(&ka) } else { ka.total_cmp(&kb) }).then_with(|| a.0.cmp(&b.0))
    });
    rows.truncate(q.k);
    rows
}

struct Query {
    up: bool,
    relative: bool,
    revenue: bool,
    min_count: i64,
    k: usize,
}

#[test]
fn movers_of_ended_periods_equal_the_ground_truth_against_every_baseline() {
    let dir = tempfile::tempdir().unwrap();
    // The same four October days in two years, in one file.
    let (a, b) = (dir.path().join("2025.ndjson"), dir.path().join("2026.ndjson"));
    gen(&a, &["--events", "12000", "--products", "400", "--seed", "41", "--start", "2025-10-01", "--days", "4"]);
    gen(&b, &["--events", "12000", "--products", "400", "--seed", "42", "--start", "2026-10-01", "--days", "4"]);
    let input = dir.path().join("events.ndjson");
    let mut text = std::fs::read_to_string(&a).unwrap();
    text.push_str(&std::fs::read_to_string(&b).unwrap());
    std::fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    let out = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = serve(&data, &[]);

    let buckets = bucket_truth(&ground_truth(&input));
    let days = |dates: &[&str]| {
        let starts: Vec<i64> = dates.iter().map(|d| start_of(d)).collect();
        period_sums(&buckets, "day", &starts)
    };
    // (period and baseline parameters, the period's sums, the baseline's sums)
    let cases = [
        ("granularity=day&start=2026-10-03", days(&["2026-10-03"]), days(&["2026-10-02"])),
        ("granularity=day&start=2026-10-03&baseline=same_last_year", days(&["2026-10-03"]), days(&["2025-10-03"])),
        ("from=2026-10-03&to=2026-10-05", days(&["2026-10-03", "2026-10-04"]), days(&["2026-10-01", "2026-10-02"])),
        (
            "from=2026-10-02&to=2026-10-04&baseline=same_last_year",
            days(&["2026-10-02", "2026-10-03"]),
            days(&["2025-10-02", "2025-10-03"]),
        ),
        (
            "granularity=day&start=2026-10-04&baseline=2025-10-01,2025-10-03",
            days(&["2026-10-04"]),
            days(&["2025-10-01", "2025-10-02"]),
        ),
    ];
    let mut checked = 0;
    for (period, now, then) in &cases {
        assert!(!now.is_empty() && !then.is_empty(), "{period}: the truth has data on both sides");
        for (up, relative, min_count) in [(true, false, 0), (false, false, 0), (true, true, 3), (false, true, 1)] {
            for revenue in [false, true] {
                for k in [10, 1000] {
                    let q = Query { up, relative, revenue, min_count, k };
                    let url = format!(
                        "{}/api/v1/movers?{period}&k={k}&by={}&direction={}&change={}&min_count={min_count}",
                        s.url,
                        if revenue { "revenue" } else { "quantity" },
                        if up { "up" } else { "down" },
                        if relative { "relative" } else { "absolute" },
                    );
                    let (status, a) = get_json(&url);
                    assert_eq!(status, 200, "{url}: {a}");
                    assert_eq!(a["exact"], true, "{url}: {a}");
                    let rows: Vec<(String, i64, i64)> = a["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            assert_eq!(
                                r["change"].as_i64(),
                                Some(r["now"].as_i64().unwrap() - r["then"].as_i64().unwrap())
                            );
                            assert_eq!(r["change_error"], 0);
                            (
                                r["product_id"].as_str().unwrap().to_string(),
                                r["now"].as_i64().unwrap(),
                                r["then"].as_i64().unwrap(),
                            )
                        })
                        .collect();
                    let want = movers_truth(now, then, &q);
                    assert_eq!(rows, want, "{url}");
                    checked += want.len();
                }
            }
        }
    }
    assert!(checked > 5_000, "only {checked} rows checked");

    // Every row of a top list carries its rank the day before.
    let before = days(&["2026-10-02"]);
    let mut ranked: Vec<(&String, i64)> = before.iter().map(|(id, v)| (id, v.0)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let (_, a) = get_json(&format!("{}/api/v1/top?granularity=day&start=2026-10-03&k=50", s.url));
    assert_eq!(a["baseline_from"], "2026-10-02T00:00:00.000Z");
    for r in a["rows"].as_array().unwrap() {
        let id = r["product_id"].as_str().unwrap();
        let was = ranked.iter().position(|(p, _)| p.as_str() == id).map(|i| i as i64 + 1);
        assert_eq!(r["previous_rank"].as_i64(), was, "{r}");
        assert_eq!(r["rank_change"].as_i64(), was.map(|w| w - r["rank"].as_i64().unwrap()), "{r}");
    }

    // The baselines as the reply names them, and clear 400s.
    let (_, a) = get_json(&format!("{}/api/v1/movers?granularity=week&start=2026-W40&baseline=same_last_year", s.url));
    assert_eq!(
        (a["baseline_from"].as_str(), a["baseline_to"].as_str()),
        (Some("2025-09-29T00:00:00.000Z"), Some("2025-10-06T00:00:00.000Z"))
    );
    for (query, error) in [
        ("granularity=day&start=2026-10-03&direction=sideways", r#"direction: "sideways" is not one of up, down"#),
        ("granularity=day&start=2026-10-03&change=odd", r#"change: "odd" is not one of absolute, relative"#),
        ("granularity=day&start=2026-10-03&min_count=-1", r#"min_count: "-1" is not a whole number of at least 0"#),
        (
            "granularity=day&start=2026-10-03&baseline=2026-10-03,2026-10-05",
            "baseline: it overlaps the period; a baseline must be a different time",
        ),
        (
            "granularity=day&start=2026-10-03&baseline=yesterday",
            r#"baseline: "yesterday" is not previous, same_last_year, or FROM,TO (e.g. 2026-11-01,2026-11-08)"#,
        ),
    ] {
        let (status, a) = get_json(&format!("{}/api/v1/movers?{query}", s.url));
        assert_eq!((status, a["error"].as_str()), (400, Some(error)), "{query}");
    }
    let (status, a) =
        get_json(&format!("{}/api/v1/movers?granularity=day&start=2026-10-03&baseline=2025-10-05,2025-10-01", s.url));
    assert_eq!(status, 400);
    assert!(a["error"].as_str().unwrap().starts_with("baseline: from must be before to"), "{a}");
}
