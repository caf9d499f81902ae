//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser/`) opens a running `topk serve --demo`, changes the
//! period, and checks that the table shows the API's top 10 (and the open day's
//! projected column, sparklines and the chart's projected end); then a past day of the
//! demo's history (exact, the product chart centred on it), a reload from the URL, its
//! rank changes and biggest movers as the API gives them, its worst sellers (and the current day's refusal of them), the
//! error states, the hour rollover under a controlled clock, a 420 px screen and the dark
//! palette; a country and a category picked, and the breakdown view's small multiples.
//! Screenshots are saved as `target/dashboard.png`, `target/dashboard-breakdown.png` and
//! `target/dashboard-narrow-dark.png` for people to look at.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// playwright-core, installed from the lock file on first use.
fn browser_driver() -> PathBuf {
    let dir = workspace().join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the browser test");
        assert!(st.success(), "npm ci in {} failed", dir.display());
    }
    dir.join("dashboard.mjs")
}

#[test]
fn dashboard_table_matches_the_api_after_changing_the_period() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} not found: install Debian's chromium (apt-get install chromium; .ci/run does) or set CHROMIUM"
    );
    let script = browser_driver();
    let dir = tempfile::tempdir().unwrap();
    // Three sets, so the combination's ~80 values times five granularities of open buckets:
    // more sketches than the default cap holds (at the cap a value new to a bucket counts
    // under "(other)" there, which the speed layer's own tests cover). Here every value the
    // dashboard picks has its own lists.
    let sets = ["--breakdowns", "country;category;country,category", "--speed-breakdown-memory-mb", "512"];
    let s = serve(&dir.path().join("data"), &[&["--demo"][..], &sets].concat());
    // Wait for the demo's sales to reach the speed layer.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = reqwest::blocking::get(format!("{}/api/v1/top?granularity=day&k=10", s.url))
            .and_then(|r| r.json::<serde_json::Value>())
            .map(|a| a["rows"].as_array().map_or(0, Vec::len))
            .unwrap_or(0);
        if rows == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the demo produced no top 10 within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The demo's history: a week ago is exact (the batch layer rolled it up), beside
    // today's approximate answers.
    let started = Instant::now();
    let week_ago = chrono::Utc::now().date_naive() - chrono::Duration::days(7);
    loop {
        let a: serde_json::Value =
            reqwest::blocking::get(format!("{}/api/v1/top?granularity=day&start={week_ago}&k=10", s.url))
                .and_then(|r| r.json())
                .unwrap_or_default();
        if a["exact"] == true && a["rows"].as_array().is_some_and(|r| r.len() == 10) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the demo's history never made {week_ago} exact: {a}");
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("demo history: {week_ago} exact after {:.1} s", started.elapsed().as_secs_f64());
    let shot = workspace().join("target/dashboard.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let out = Command::new("node").arg(&script).arg(&s.url).arg(&shot).env("CHROMIUM", &chromium).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("table matches the API").count(), 8, "{stdout}");
    for step in [
        "projection: ",
        "search: ",
        "breakdown view: ",
        "chart: ",
        "reload: ",
        "rank changes and movers: ",
        "worst sellers: ",
        "errors: ",
        "rollover: ",
        "narrow and dark: ",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "screenshot {} is empty", shot.display());
    let narrow = shot.with_file_name("dashboard-narrow-dark.png");
    assert!(std::fs::metadata(&narrow).unwrap().len() > 10_000, "screenshot {} is empty", narrow.display());
}
