//! Outages in the middle of a stream: PostgreSQL restarts, the broker crashes and comes
//! back, the broker stops answering. Every role process retries, recovers, and the exact
//! answers still equal the ground truth.
//!
//! A test binary of its own: it restarts the machine's PostgreSQL server and stops the
//! test broker, which the tests of other binaries (run one binary at a time) also use;
//! its tests take turns.

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

/// The outages of one test must not land in the other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Feeds `files` to the API one after the other in the background.
fn feed(api: &str, files: &[PathBuf]) -> std::thread::JoinHandle<()> {
    let (api, files) = (api.to_string(), files.to_vec());
    std::thread::spawn(move || {
        for f in &files {
            replay_to(&api, &[f]);
            std::thread::sleep(Duration::from_millis(400));
        }
    })
}

/// Runs `roles` (and the API) in `d`, feeds 8 files of 5,000 events (seeds from `seed`),
/// brings about `outage` 1.5 s in, and checks the answers are exact once the feed is done.
fn outage_mid_stream(mut d: Deployment, roles: &[&str], seed: u64, outage: impl FnOnce()) -> Deployment {
    for role in roles {
        d.start(role, role, &[]);
    }
    let api = d.start("api", "api", &[]);
    let files: Vec<PathBuf> =
        (0..8).map(|i| input(d.dir.path(), &format!("part-{i}.ndjson"), "5000", &(seed + i).to_string())).collect();
    let feeder = feed(&api, &files);
    std::thread::sleep(Duration::from_millis(1500));
    outage();
    feeder.join().unwrap();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    d.assert_exact(&bucket_truth(&truth_of(&refs)));
    d
}

#[test]
fn roles_ride_out_a_postgresql_restart_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = outage_mid_stream(Deployment::new(2), &["aggregator", "archive", "speed", "batch"], 60, || {
        eprintln!("postgresql: {}", restart_postgres());
    });
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

#[test]
fn roles_ride_out_a_broker_crash_and_restart_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A broker of this test's own, on disk: killed, it keeps what it acknowledged.
    let mut broker = topk_log::testing::DurableBroker::start();
    let d = Deployment::on(&broker.addr, 2, "");
    let d = outage_mid_stream(d, &["aggregator", "archive", "speed", "batch"], 100, || {
        broker.kill();
        std::thread::sleep(Duration::from_secs(5));
        broker.restart();
        eprintln!("broker {} killed (SIGKILL) and started again after 5 s", broker.addr);
    });
    // Every process talks to the broker; each noticed, and said so.
    for role in ["api", "aggregator", "archive", "speed", "batch"] {
        let said = d.warnings(role);
        for line in said.iter().take(3) {
            eprintln!("{role}: {line}");
        }
        assert!(
            said.iter().any(|l| l.contains(&broker.addr) || l.contains("kafka")),
            "{role} logged nothing about the broker's outage:\n{}",
            d.tail_all(role)
        );
    }
}

/// The pid of the test broker (a `tansu` process listening on 127.0.0.1:9092).
fn broker_pid() -> String {
    let out = Command::new("pgrep").args(["-f", "tansu broker --listener-url tcp://127.0.0.1:9092"]).output().unwrap();
    let pids = String::from_utf8_lossy(&out.stdout);
    pids.lines().next().unwrap_or_else(|| panic!("no tansu broker on 127.0.0.1:9092 to stop")).to_string()
}

#[test]
fn roles_ride_out_a_broker_that_stops_answering_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = outage_mid_stream(Deployment::new(2), &["aggregator", "archive", "batch"], 80, || {
        // SIGSTOP: connections stay open and nothing answers (a hung or partitioned
        // broker), for 15 s; nothing it holds is lost, unlike a restart of this
        // in-memory broker.
        let pid = broker_pid();
        /// Lets the broker go on whatever happens, or every later test would hang.
        struct Continue<'a>(&'a str);
        impl Drop for Continue<'_> {
            fn drop(&mut self) {
                let _ = Command::new("kill").args(["-CONT", self.0]).status();
            }
        }
        let _resume = Continue(&pid);
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
        std::thread::sleep(Duration::from_secs(15));
        eprintln!("broker {pid} stopped for 15 s");
    });
    for role in ["api", "aggregator", "archive"] {
        for line in d.warnings(role) {
            eprintln!("{role}: {line}");
        }
    }
}
