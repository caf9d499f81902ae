//! Shared test helpers: generated inputs, an independent ground truth, archive sums.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub mod deploy;

/// (product_id, hour start ms) -> (count, revenue_cents)
pub type Sums = BTreeMap<(String, i64), (i64, i64)>;

pub fn topk_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_topk"))
}

/// A `topk` command. The tests' inputs have fixed dates, so hourly rows are kept however
/// long ago those dates lie (`hour_retention_days = 0`) and stay checkable.
pub fn topk_cmd() -> Command {
    let mut c = Command::new(topk_bin());
    c.env("TOPK_HOUR_RETENTION_DAYS", "0");
    c
}

/// splitmix64: a tiny seeded generator, so kill schedules are reproducible.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs `topk gen` with the given extra arguments into `out`.
pub fn gen(out: &Path, args: &[&str]) {
    let status = topk_cmd().arg("gen").args(args).arg("--output").arg(out).status().expect("running topk gen");
    assert!(status.success(), "topk gen failed");
}

fn hour_of(ts: &serde_json::Value) -> i64 {
    let ms = match ts {
        serde_json::Value::Number(n) => n.as_i64().expect("integer ms"),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis(),
        other => panic!("unexpected ts {other}"),
    };
    ms.div_euclid(3_600_000) * 3_600_000
}

/// Computes the expected archive sums from an NDJSON file without any topk code:
/// every distinct event_id counts once, refunds in the hour of their sale_ts.
pub fn ground_truth(path: &Path) -> Sums {
    truth_with(path, &[])
}

/// The breakdowns `topk` keeps by default (`breakdowns = ["country", "category"]`).
pub const DEFAULT_BREAKDOWNS: [&str; 2] = ["country", "category"];

/// The key under which a breakdown's sums of a product are kept in [`Sums`] and
/// [`BucketSums`] beside the global ones (keyed by the product alone): `country=DE\tp1`.
pub fn in_breakdown(breakdown: &str, product: &str) -> String {
    if breakdown.is_empty() {
        product.to_string()
    } else {
        format!("{breakdown}\t{product}")
    }
}

/// [`ground_truth`], and beside it each default breakdown's sums (see [`truth_with`]).
pub fn full_truth(path: &Path) -> Sums {
    truth_with(path, &DEFAULT_BREAKDOWNS)
}

/// [`ground_truth`], and beside it the sums of each breakdown of `sets` (`"country"`,
/// `"country,category"`), computed from the file alone: an event counts under the values
/// it carries (`(none)` for a dimension without one; several joined by `|`), a refund
/// under the values it carries itself.
pub fn truth_with(path: &Path, sets: &[&str]) -> Sums {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = HashSet::new();
    let mut sums = Sums::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if !seen.insert(v["event_id"].as_str().unwrap().to_string()) {
            continue;
        }
        let when = if v["sale_ts"].is_null() { &v["ts"] } else { &v["sale_ts"] };
        let qty = v["quantity"].as_i64().unwrap_or(1);
        let price = v["price_cents"].as_i64().unwrap_or(0);
        let product = v["product_id"].as_str().unwrap();
        let breakdowns = sets.iter().map(|set| {
            let values: Vec<&str> =
                set.split(',').map(|d| v[d].as_str().filter(|s| !s.is_empty()).unwrap_or("(none)")).collect();
            format!("{set}={}", values.join("|"))
        });
        for breakdown in std::iter::once(String::new()).chain(breakdowns) {
            let e = sums.entry((in_breakdown(&breakdown, product), hour_of(when))).or_insert((0, 0));
            e.0 += qty;
            e.1 += qty * price;
        }
    }
    sums
}

/// Sums every Parquet file of the archive directory per (product, hour).
pub fn archive_sums(archive: &Path) -> Sums {
    archive_root_sums(&topk_archive::Root::Dir(archive.to_path_buf()))
}

/// Sums every Parquet file of an archive (a directory or S3) per (product, hour).
pub fn archive_root_sums(root: &topk_archive::Root) -> Sums {
    let mut sums = Sums::new();
    for file in topk_archive::list_files(root).unwrap() {
        for r in topk_archive::read_file(root, &file).unwrap() {
            let e = sums.entry((r.product_id, r.hour_ms)).or_insert((0, 0));
            e.0 += r.count;
            e.1 += r.revenue_cents;
        }
    }
    sums
}

/// Asserts two sum tables are equal, showing the first differences rather than both tables.
pub fn assert_sums_eq(got: &Sums, want: &Sums) {
    let mut diffs = Vec::new();
    for (k, w) in want {
        if got.get(k) != Some(w) {
            diffs.push(format!("{k:?}: got {:?}, want {w:?}", got.get(k)));
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            diffs.push(format!("{k:?}: got {g:?}, want nothing"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} (product, hour) sums differ, e.g.:\n{}",
        diffs.len(),
        want.len(),
        diffs[..diffs.len().min(10)].join("\n")
    );
}

/// (product_id, count, revenue_cents)
type ProductRow = (String, i64, i64);

/// (granularity, bucket start ms, product_id) -> (count, revenue_cents)
pub type BucketSums = BTreeMap<(String, i64, String), (i64, i64)>;

/// Rolls the hourly ground truth up to every granularity with chrono's calendar,
/// independently of topk's own bucket code — every bucket that has ended (by the wall
/// clock, less the default allowed lateness of 5 minutes): the batch layer makes exactly
/// those exact, never one still open (this year, say).
pub fn bucket_truth(hourly: &Sums) -> BucketSums {
    let now = chrono::Utc::now().timestamp_millis();
    bucket_truth_ended_by(hourly, now - 5 * 60_000)
}

/// [`bucket_truth`] of the buckets that end at or before `ended_by` (epoch ms).
pub fn bucket_truth_ended_by(hourly: &Sums, ended_by: i64) -> BucketSums {
    use chrono::{Datelike, Months, NaiveDate, TimeZone, Utc};
    let start = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()).timestamp_millis();
    let mut out = BucketSums::new();
    for ((product, hour), (c, r)) in hourly {
        let date = Utc.timestamp_millis_opt(*hour).unwrap().date_naive();
        let monday = date - chrono::Duration::days(date.weekday().num_days_from_monday() as i64);
        let month = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap();
        let year = NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap();
        // (granularity, start, end)
        let buckets = [
            ("hour", *hour, hour + 3_600_000),
            ("day", start(date), start(date + chrono::Duration::days(1))),
            ("week", start(monday), start(monday + chrono::Duration::days(7))),
            ("month", start(month), start(month + Months::new(1))),
            ("year", start(year), start(year + Months::new(12))),
        ];
        for (g, b, end) in buckets {
            if end > ended_by {
                continue;
            }
            let e = out.entry((g.to_string(), b, product.clone())).or_insert((0, 0));
            e.0 += c;
            e.1 += r;
        }
    }
    out
}

/// Per product: (units, revenue in cents) over a period.
pub type PeriodSums = BTreeMap<String, (i64, i64)>;

/// A GET's status and JSON body.
pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::get(url).unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

/// Epoch ms of 00:00 UTC of a `YYYY-MM-DD` date.
pub fn start_of(date: &str) -> i64 {
    use chrono::TimeZone;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    chrono::Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()).timestamp_millis()
}

/// The truth of `granularity` buckets starting at `starts`, summed per product.
pub fn period_sums(buckets: &BucketSums, granularity: &str, starts: &[i64]) -> PeriodSums {
    let mut sums = PeriodSums::new();
    for ((g, b, p), (c, r)) in buckets {
        if g == granularity && starts.contains(b) {
            let e = sums.entry(p.clone()).or_default();
            e.0 += c;
            e.1 += r;
        }
    }
    sums
}

/// Opens a store by path (SQLite) or `postgres://` URL.
pub fn open_store(location: &(impl AsRef<std::ffi::OsStr> + ?Sized)) -> topk_store::SqlStore {
    topk_store::SqlStore::open(&location.as_ref().to_string_lossy()).expect("opening the store")
}

/// The product catalog an input should leave behind, computed from the file alone: every
/// product, with the last name and category its lines carried.
pub fn catalog_truth(path: &Path) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut out: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let e = out.entry(v["product_id"].as_str().unwrap().to_string()).or_default();
        if let Some(name) = v["product_name"].as_str() {
            e.0 = Some(name.to_string());
        }
        if let Some(category) = v["category"].as_str() {
            e.1 = Some(category.to_string());
        }
    }
    out
}

/// The store's product catalog: id -> (name, category).
pub fn store_catalog(
    location: &(impl AsRef<std::ffi::OsStr> + ?Sized),
) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    open_store(location)
        .transaction(|c| {
            c.query("SELECT product_id, name, category FROM products", &[], &mut |r| {
                out.insert(r.text(0)?, (r.opt_text(1)?, r.opt_text(2)?));
                Ok(())
            })
        })
        .unwrap();
    out
}

/// Asserts the catalog holds exactly `want`, showing the first differences.
pub fn assert_catalog_eq(
    location: &(impl AsRef<std::ffi::OsStr> + ?Sized),
    want: &BTreeMap<String, (Option<String>, Option<String>)>,
) {
    let got = store_catalog(location);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).take(5).collect();
    let wrong: Vec<(&String, _, _)> =
        want.iter().filter_map(|(k, w)| got.get(k).filter(|g| *g != w).map(|g| (k, g, w))).take(5).collect();
    assert!(
        missing.is_empty() && wrong.is_empty() && got.len() == want.len(),
        "catalog: {} entries, want {}; missing e.g. {missing:?}; wrong (got, want) e.g. {wrong:?}",
        got.len(),
        want.len()
    );
}

/// Every row of the store's batch_table, the breakdowns' as [`in_breakdown`] keys them; a
/// breakdown marked as the global rows (`batch_as_global`) has the global rows.
pub fn store_sums(location: &(impl AsRef<std::ffi::OsStr> + ?Sized)) -> BucketSums {
    let mut out = BucketSums::new();
    open_store(location)
        .transaction(|c| {
            let sql = "SELECT granularity, bucket_start, breakdown, product_id, count, revenue_cents FROM batch_table
                UNION ALL SELECT a.granularity, a.bucket_start, a.breakdown, b.product_id, b.count, b.revenue_cents
                FROM batch_as_global a JOIN batch_table b
                ON b.granularity = a.granularity AND b.bucket_start = a.bucket_start AND b.breakdown = ''";
            c.query(sql, &[], &mut |r| {
                out.insert((r.text(0)?, r.int(1)?, in_breakdown(&r.text(2)?, &r.text(3)?)), (r.int(4)?, r.int(5)?));
                Ok(())
            })
        })
        .unwrap();
    out
}

/// Asserts the store's rows and top lists equal the truth for every bucket, and returns
/// how many buckets of each granularity were checked.
pub fn assert_store_exact(
    location: &(impl AsRef<std::ffi::OsStr> + ?Sized),
    truth: &BucketSums,
    k: usize,
) -> BTreeMap<String, usize> {
    use topk_store::ServingStore;
    let got = store_sums(location);
    let mut diffs = Vec::new();
    for (key, want) in truth {
        if got.get(key) != Some(want) {
            diffs.push(format!("{key:?}: got {:?}, want {want:?}", got.get(key)));
        }
    }
    for (key, g) in &got {
        if !truth.contains_key(key) {
            diffs.push(format!("{key:?}: got {g:?}, want nothing"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} batch_table rows differ, e.g.:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(10)].join("\n")
    );

    let mut per_bucket: BTreeMap<(String, i64, String), Vec<ProductRow>> = BTreeMap::new();
    for ((g, b, p), (c, r)) in truth {
        let (breakdown, p) = p.split_once('\t').unwrap_or(("", p));
        per_bucket.entry((g.clone(), *b, breakdown.to_string())).or_default().push((p.to_string(), *c, *r));
    }
    let mut store = open_store(location);
    let mut checked = BTreeMap::new();
    for ((g, b, breakdown), rows) in &per_bucket {
        let bucket = topk_core::time::Bucket { granularity: g.parse().unwrap(), start_ms: *b };
        store.set_breakdown(breakdown);
        for (by, key) in [(topk_store::By::Quantity, 1usize), (topk_store::By::Revenue, 2)] {
            let mut want: Vec<ProductRow> = rows.clone();
            want.sort_by(|x, y| {
                let (vx, vy) = if key == 1 { (x.1, y.1) } else { (x.2, y.2) };
                vy.cmp(&vx).then_with(|| x.0.cmp(&y.0))
            });
            let want: Vec<(String, i64)> = want.into_iter().take(k).map(|(p, c, _)| (p, c)).collect();
            let got: Vec<(String, i64)> =
                store.top_list(bucket, by, k).unwrap().into_iter().map(|r| (r.product_id, r.count)).collect();
            assert_eq!(got, want, "top list of ({g}, {b}, {breakdown:?}) by {by:?}");
        }
        if breakdown.is_empty() {
            *checked.entry(g.clone()).or_insert(0) += 1;
        }
    }
    checked
}

/// Units (quantity) the store lacks and units it holds beyond the truth, over the global
/// hourly rows (every sale is in exactly one): what a fault lost and counted twice.
pub fn lost_and_twice(got: &BucketSums, truth: &BucketSums) -> (i64, i64) {
    let hourly = |s: &BucketSums| -> BTreeMap<(i64, String), i64> {
        s.iter()
            .filter(|((g, _, p), _)| g == "hour" && !p.contains('\t'))
            .map(|((_, b, p), (c, _))| ((*b, p.clone()), *c))
            .collect()
    };
    let (got, truth) = (hourly(got), hourly(truth));
    let keys: std::collections::BTreeSet<_> = got.keys().chain(truth.keys()).collect();
    let (mut lost, mut twice) = (0, 0);
    for key in keys {
        let d = got.get(key).copied().unwrap_or(0) - truth.get(key).copied().unwrap_or(0);
        lost += (-d).max(0);
        twice += d.max(0);
    }
    (lost, twice)
}

/// One line of the fault campaign's tally (RELIABILITY.md): `fields` (the fault's kind,
/// target, backend, what was injected, the traffic), its `seed`, the events acknowledged and
/// the units `(lost, counted twice)`. Printed, and appended to the file
/// `TOPK_CAMPAIGN_REPORT` names, if any.
pub fn campaign_line(fields: &[&str], seed: u64, acknowledged: u64, (lost, twice): (i64, i64)) {
    let line = format!(
        "CAMPAIGN | {} | seed {seed} | {acknowledged} acknowledged | {lost} lost | {twice} counted twice",
        fields.join(" | ")
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("TOPK_CAMPAIGN_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

/// A `topk serve` child process on a free port.
pub struct Serve {
    pub child: Child,
    pub url: String,
}

pub fn serve(data: &Path, extra: &[&str]) -> Serve {
    serve_logged(data, extra, None)
}

/// [`serve`], its log appended to `log` (discarded if none).
pub fn serve_logged(data: &Path, extra: &[&str], log: Option<&Path>) -> Serve {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = topk_cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).expect("serve prints its URL").to_string();
    Serve { child, url }
}

impl Drop for Serve {
    /// A failed test must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample Grafana dashboard and Prometheus alert rules (paths from the repository root).
pub const SAMPLE_MONITORING: [&str; 2] = ["deploy/grafana/topk-dashboard.json", "deploy/prometheus/alerts.yml"];

/// Metrics exported once the last ended day is exact (the projection test checks them).
pub fn projection_only(name: &str) -> bool {
    name.starts_with("topk_projection_")
}

/// Metrics that only a process running the Kafka source (`topk source`) exports.
pub fn source_only(name: &str) -> bool {
    name.starts_with("topk_source_") || name == "topk_dead_letters_total"
}

/// The `topk_*` metric names the repository file `file` uses.
pub fn metric_names_used(file: &str) -> std::collections::BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let body = std::fs::read_to_string(root.join(file)).unwrap();
    body.match_indices("topk_")
        .map(|(i, _)| {
            let rest = &body[i..];
            rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())].to_string()
        })
        .collect()
}

/// The value of the series `series` (a name with its labels, as printed) in the
/// Prometheus text `metrics`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// Whether the Prometheus text `metrics` exports `name` (a sample or at least its type).
pub fn exports(metrics: &str, name: &str) -> bool {
    metrics.contains(&format!("\n{name}")) || metrics.contains(&format!("# TYPE {name} "))
}
