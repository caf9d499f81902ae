//! `topk serve` as a real child process: acknowledged events survive kill -9, remote
//! replay counts once, the demo produces data and SIGTERM shuts down cleanly.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the embedded pipeline once more over `data` so everything in the log is archived.
fn drain(dir: &Path, data: &Path) {
    let empty = dir.join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let out = topk_cmd().arg("replay").arg(&empty).arg("--data-dir").arg(data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = serve(&data, &["--flush-interval-ms", "3600000"]);
    let client = reqwest::blocking::Client::new();
    let ts = topk_core::clock::now_ms() - 3_600_000;
    let mut sent = 0;
    for batch in 0..10 {
        let body: String = (0..100)
            .map(|i| {
                format!(
                    "{{\"event_id\":\"b{batch}-{i}\",\"ts\":{ts},\"product_id\":\"p{}\",\"price_cents\":10}}\n",
                    i % 7
                )
            })
            .collect();
        let r = client.post(format!("{}/api/v1/events", s.url)).body(body).send().unwrap();
        assert_eq!(r.status(), 200);
        sent += 100;
    }
    // Nothing was flushed yet (the interval is an hour): the events live only in the log.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drain(dir.path(), &data);
    let sums = archive_sums(&data.join("archive"));
    assert_eq!(sums.values().map(|(c, _)| c).sum::<i64>(), sent);
    assert_eq!(sums.values().map(|(_, r)| r).sum::<i64>(), sent * 10);
}

#[test]
fn replay_to_a_server_counts_every_event_once_even_when_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "20000", "--products", "500", "--start", "2026-11-20", "--days", "1", "--seed", "5"]);
    let data = dir.path().join("data");
    let mut s = serve(&data, &["--auth-token", "t0ken", "--flush-interval-ms", "200"]);
    for round in 0..2 {
        let out =
            topk_cmd().args(["replay", "--server", &s.url, "--auth-token", "t0ken"]).arg(&input).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let expect = if round == 0 { "0 already ingested" } else { "0 events accepted" };
        assert!(stdout.contains(expect), "round {round}: {stdout}");
    }
    assert!(sigterm(&mut s.child).success());
    drain(dir.path(), &data);
    assert_sums_eq(&archive_sums(&data.join("archive")), &ground_truth(&input));
}

#[test]
fn demo_produces_archived_data_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = serve(&data, &["--demo", "--demo-rate", "5000", "--flush-interval-ms", "200"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while topk_archive::list_files(&topk_archive::Root::Dir(data.join("archive"))).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no archive file after 30 s of demo traffic");
        std::thread::sleep(Duration::from_millis(100));
    }
    let health = reqwest::blocking::get(format!("{}/healthz", s.url)).unwrap();
    assert_eq!(health.status(), 200);
    assert!(sigterm(&mut s.child).success(), "graceful shutdown exits 0");
    let sums = archive_sums(&data.join("archive"));
    assert!(sums.values().map(|(c, _)| c).sum::<i64>() > 0);
}
