//! Shared test helpers: generated inputs, an independent ground truth, archive sums.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// (product_id, hour start ms) -> (count, revenue_cents)
pub type Sums = BTreeMap<(String, i64), (i64, i64)>;

pub fn topk_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_topk"))
}

/// Runs `topk gen` with the given extra arguments into `out`.
pub fn gen(out: &Path, args: &[&str]) {
    let status =
        Command::new(topk_bin()).arg("gen").args(args).arg("--output").arg(out).status().expect("running topk gen");
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
        let e = sums.entry((v["product_id"].as_str().unwrap().to_string(), hour_of(when))).or_insert((0, 0));
        e.0 += qty;
        e.1 += qty * price;
    }
    sums
}

/// Sums every Parquet file of the archive per (product, hour).
pub fn archive_sums(archive: &Path) -> Sums {
    let mut sums = Sums::new();
    for file in topk_archive::list_files(archive).unwrap() {
        for r in topk_archive::read_file(&file).unwrap() {
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
