//! Exactly once under kill -9: a replay is killed with SIGKILL at seeded random moments
//! (during ingest, flushes, archiving or rollups) and restarted each time; the archive,
//! every batch bucket and the product catalog must still equal the ground truth exactly.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn replay_killed_at_random_moments_still_archives_exact_sums() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    // Refunds and duplicates in the input; small flushes and segments so that a kill can
    // land between any two of append, flush, segment roll, archive write and commit.
    gen(
        &input,
        &[
            "--events",
            "300000",
            "--products",
            "20000",
            "--start",
            "2026-11-01",
            "--days",
            "2",
            "--seed",
            "11",
            "--refund-rate",
            "0.02",
            "--duplicate-rate",
            "0.01",
        ],
    );
    let data = dir.path().join("data");
    let replay_into = |data: &std::path::Path| {
        let mut c = topk_cmd();
        c.arg("replay")
            .arg(&input)
            .arg("--data-dir")
            .arg(data)
            .args(["--flush-interval-ms", "50", "--max-entries", "3000", "--segment-bytes", "262144"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let replay = || replay_into(&data);

    // How long an uninterrupted run takes on this machine, to spread kills over it.
    let probe_dir = dir.path().join("probe");
    let t0 = Instant::now();
    let st = replay_into(&probe_dir).status().unwrap();
    assert!(st.success());
    let full = t0.elapsed().as_millis().max(200) as u64;

    // CI uses the defaults; TOPK_CRASH_KILLS / TOPK_CRASH_SEED run longer stress locally.
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (want_kills, seed) = (env("TOPK_CRASH_KILLS", 10), env("TOPK_CRASH_SEED", 0x5eed));
    let mut rng = seed;
    let mut kills = 0;
    let mut attempts = 0;
    while kills < want_kills {
        attempts += 1;
        assert!(attempts < want_kills * 6, "could not kill a running replay {want_kills} times");
        let mut child = replay().spawn().unwrap();
        let delay = 10 + splitmix64(&mut rng) % full;
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            eprintln!("kill {kills}: after {delay} ms");
        } else {
            // It finished before the kill: the data directory is complete; start over on
            // a fresh one so every kill still interrupts real work.
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let truth = ground_truth(&input);
            assert_sums_eq(&archive_sums(&data.join("archive")), &truth);
            assert_store_exact(&data.join("store.db"), &bucket_truth(&full_truth(&input)), 1000);
            assert_catalog_eq(&data.join("store.db"), &catalog_truth(&input));
            std::fs::remove_dir_all(&data).unwrap();
        }
    }
    let out = replay().output().unwrap();
    assert!(out.status.success(), "final replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let truth = ground_truth(&input);
    assert_sums_eq(&archive_sums(&data.join("archive")), &truth);
    // The catalog is as crash-safe as the counts: every product, with its name (names
    // were once written off to the side and lost for the lines a kill cut short).
    assert_catalog_eq(&data.join("store.db"), &catalog_truth(&input));
    // Kills also landed in the middle of rollups: no bucket may be half written.
    let store = data.join("store.db");
    let truth = bucket_truth(&full_truth(&input));
    let injected = format!("{kills} SIGKILLs in {attempts} runs");
    let events = std::fs::read_to_string(&input).unwrap().lines().count() as u64;
    let fields = ["kill", "replay", "embedded", &injected, "one file, resumed after each kill"];
    campaign_line(&fields, seed, events, lost_and_twice(&store_sums(&store), &truth));
    let checked = assert_store_exact(&store, &truth, 1000);
    assert_eq!(checked["hour"], 48);
    assert_eq!(checked["day"], 2);
}
