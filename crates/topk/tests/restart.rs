//! PostgreSQL restarts in the middle of a stream: every role process retries, recovers,
//! says so in its log, and the exact answers still equal the ground truth.
//!
//! A test binary of its own: it restarts the machine's PostgreSQL server, which the
//! tests of other binaries (run one binary at a time) also use.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::deploy::*;
use common::*;

/// Restarts the local PostgreSQL cluster on port 5432 (`pg_ctlcluster`, as root), or,
/// where that is not allowed, cuts every connection to the test database — what the
/// clients see of a restart either way.
fn restart_postgres() -> &'static str {
    let clusters = Command::new("pg_lsclusters").arg("--no-header").output();
    let cluster = clusters.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"5432")).then(|| (f[0].to_string(), f[1].to_string()))
        })
    });
    if let Some((version, name)) = cluster {
        let st = Command::new("pg_ctlcluster").args([&version, &name, "restart"]).status();
        if st.is_ok_and(|s| s.success()) {
            return "restarted the server";
        }
    }
    let mut admin = postgres::Client::connect(&topk_store::testing::postgres_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .unwrap();
    "terminated every connection"
}

#[test]
fn roles_ride_out_a_postgresql_restart_mid_stream() {
    let mut d = Deployment::new(2);
    d.start("aggregator", "aggregator", &[]);
    d.start("archive", "archive", &[]);
    d.start("speed", "speed", &[]);
    d.start("batch", "batch", &[]);
    let api = d.start("api", "api", &[]);
    let files: Vec<PathBuf> =
        (0..8).map(|i| input(d.dir.path(), &format!("part-{i}.ndjson"), "5000", &format!("{}", 60 + i))).collect();
    let feeder = {
        let (api, files) = (api.clone(), files.clone());
        std::thread::spawn(move || {
            for f in &files {
                replay_to(&api, &[f]);
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let how = restart_postgres();
    eprintln!("postgresql: {how}");
    feeder.join().unwrap();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    d.assert_exact(&bucket_truth(&truth_of(&refs)));
    // The roles that write the store noticed, and said so.
    let logs = ["speed", "batch"].map(|r| d.tail_all(r)).join("\n");
    for line in logs.lines().filter(|l| l.contains("postgresql") || l.contains("role failed")) {
        eprintln!("{line}");
    }
    assert!(
        logs.contains("reconnected to postgresql") || logs.contains("restarting it"),
        "no role logged the outage:\n{logs}"
    );
}
