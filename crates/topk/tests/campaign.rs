//! The fault campaign of RELIABILITY.md: seeded faults of several kinds against a ground
//! truth computed from the input by this file's helpers, never by topk's code.
//!
//! - `serve` SIGKILLed under a client that retries every batch it got no 200 for;
//! - every production role (aggregator, archive, speed, batch, api, source) SIGKILLed in
//!   turn on Kafka (a broker on SQLite) and PostgreSQL;
//! - the broker and PostgreSQL on a test host of their own (a network namespace behind a
//!   veth pair), partitioned from the roles and then degraded (nftables drops, a token
//!   bucket), then healed;
//! - a full disk under `serve`, freed while it runs, then a SIGKILL and a restart; the
//!   same with I/O errors (EIO on every change, from a FUSE file system of the test's own).
//!
//! Every acknowledged sale must be counted exactly once: the store's rows (every
//! granularity, every default breakdown) and top lists must equal the truth. Each test
//! prints a `CAMPAIGN` line with what was injected and what was lost or counted twice,
//! and appends it to the file `TOPK_CAMPAIGN_REPORT` names, if any.
//!
//! The suite runs a short campaign (the defaults); `scripts/campaign.sh` runs the long
//! one. Knobs: `TOPK_CAMPAIGN_SEED`, `TOPK_CAMPAIGN_EVENTS`, `TOPK_CAMPAIGN_SERVE_KILLS`,
//! `TOPK_CAMPAIGN_ROLE_KILLS`, `TOPK_CAMPAIGN_PARTITION_SECS`.
//!
//! The network and disk tests need root (namespaces, `tc`, `nft`, `mount`), as this
//! machine's tests run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::deploy::*;
use common::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(format!("TOPK_CAMPAIGN_{name}")).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    knob("SEED", 20_261_207)
}

/// What the retrying client sent and what it was told.
#[derive(Debug, Default)]
struct Sent {
    batches: u64,
    /// Requests, retries included.
    attempts: u64,
    /// Valid events in batches answered 200.
    acknowledged: u64,
    /// Bad lines sent, each rejected with its line, field and reason.
    bad_rejected: u64,
    /// The replies other than 200, by status, with the last message of each.
    refusals: BTreeMap<u16, (u64, String)>,
    /// Requests that got no reply at all (connection refused or cut).
    no_reply: u64,
    /// The longest a request waited for its reply.
    slowest: Duration,
}

/// Lines no valid event looks like; one rides in every fifth batch, and its reply must name
/// its line, the field at fault where there is one, and why.
const BAD_LINES: [&str; 6] = [
    "not json at all",
    r#"{"event_id":"bad-ts","ts":"yesterday","product_id":"p1"}"#,
    r#"{"event_id":"bad-qty","ts":1748822400000,"product_id":"p1","quantity":-3}"#,
    r#"{"ts":1748822400000,"product_id":"p1"}"#,
    r#"{"event_id":"bad-product","ts":1748822400000,"product_id":""}"#,
    r#"{"event_id":"bad-price","ts":1748822400000,"product_id":"p1","price_cents":"ten"}"#,
];

/// Posts `lines` to `url`'s ingest API in batches of 500, `pause` apart, retrying each
/// batch (after 100 ms) until it is answered 200 — as a producer that must not lose a
/// sale would. `url` may change while it runs (a restarted server).
fn post_retrying(url: &Mutex<String>, lines: &[String], pause: Duration, sent: &Mutex<Sent>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    for (n, chunk) in lines.chunks(500).enumerate() {
        let bad = (n % 5 == 0).then(|| BAD_LINES[n / 5 % BAD_LINES.len()]);
        let mut body = chunk.join("\n");
        body.push('\n');
        if let Some(bad) = bad {
            body.push_str(bad);
            body.push('\n');
        }
        sent.lock().unwrap().batches += 1;
        loop {
            sent.lock().unwrap().attempts += 1;
            let to = url.lock().unwrap().clone();
            let asked = Instant::now();
            let reply = client.post(format!("{to}/api/v1/events")).body(body.clone()).send();
            let status = reply.as_ref().map(|r| r.status().as_u16()).ok();
            let text = reply.and_then(|r| r.text()).unwrap_or_default();
            let mut s = sent.lock().unwrap();
            s.slowest = s.slowest.max(asked.elapsed());
            match status {
                Some(200) => {
                    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(report["accepted"], chunk.len(), "{text}");
                    if bad.is_some() {
                        let r = &report["rejected"][0];
                        assert_eq!(report["rejected_count"], 1, "{text}");
                        assert_eq!(r["line"], chunk.len() + 1, "the bad line's number: {text}");
                        assert!(!r["reason"].as_str().unwrap_or("").is_empty(), "{text}");
                        s.bad_rejected += 1;
                    }
                    s.acknowledged += chunk.len() as u64;
                    break;
                }
                Some(code) => {
                    assert!(code == 503 || code == 502 || code == 500, "refused with {code}: {text}");
                    let e = s.refusals.entry(code).or_default();
                    e.0 += 1;
                    e.1 = text;
                }
                None => s.no_reply += 1,
            }
            drop(s);
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(pause);
    }
}

/// Runs [`post_retrying`] in the background.
fn client(
    url: &Arc<Mutex<String>>,
    lines: Vec<String>,
    pause: Duration,
) -> (Arc<Mutex<Sent>>, std::thread::JoinHandle<()>) {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let (url, s) = (url.clone(), sent.clone());
    (sent, std::thread::spawn(move || post_retrying(&url, &lines, pause, &s)))
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

/// Prints the campaign's line of one test, with what the retrying client saw.
fn report(kind: &str, target: &str, backend: &str, injected: &str, sent: &Sent, tally: (i64, i64)) {
    let refused: u64 = sent.refusals.values().map(|(n, _)| n).sum();
    let traffic = format!(
        "{} batches, {} requests ({refused} refused, {} unanswered, slowest {:.1} s), {} bad lines rejected",
        sent.batches,
        sent.attempts,
        sent.no_reply,
        sent.slowest.as_secs_f64(),
        sent.bad_rejected
    );
    campaign_line(&[kind, target, backend, injected, &traffic], seed(), sent.acknowledged, tally);
}

/// The store's rows against the truth: tallied, reported, then asserted in full (rows of
/// every granularity and breakdown, and every top list).
/// Returns the buckets checked, per granularity.
fn check(
    store: &str,
    truth: &BucketSums,
    logs: impl Fn() -> String,
    line: impl FnOnce((i64, i64)),
) -> BTreeMap<String, usize> {
    let got = wait_exact(store, truth, logs);
    let tally = lost_and_twice(&got, truth);
    if tally != (0, 0) {
        // Where: the global hourly rows that differ.
        for (key, want) in truth.iter().filter(|((g, _, p), _)| g == "hour" && !p.contains('\t')) {
            if got.get(key) != Some(want) {
                eprintln!("{key:?}: got {:?}, want {want:?}", got.get(key));
            }
        }
    }
    line(tally);
    assert_store_exact(store, truth, 1000)
}

#[test]
fn serve_killed_under_a_retrying_client_counts_each_acknowledged_sale_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = knob("EVENTS", 40_000);
    let file = input(dir.path(), "events.ndjson", &events.to_string(), &(seed() % 1000).to_string());
    let lines = lines_of(&file);
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let start = || serve_logged(&data, &["--flush-interval-ms", "200"], Some(&log));
    let mut s = start();
    let kills = knob("SERVE_KILLS", 5);
    // Spread the stream over the kills (about a second apart).
    let batches = lines.len().div_ceil(500) as u64;
    let url = Arc::new(Mutex::new(s.url.clone()));
    let (sent, feeder) = client(&url, lines, Duration::from_millis(kills * 1100 / batches));
    let mut rng = seed() ^ 0x0073_6572_7665;
    let mut landed = 0;
    for kill in 1..=kills {
        std::thread::sleep(Duration::from_millis(300 + splitmix64(&mut rng) % 1400));
        landed += u64::from(!feeder.is_finished());
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        eprintln!("serve kill {kill}: {} batches sent", sent.lock().unwrap().batches);
        s = start();
        *url.lock().unwrap() = s.url.clone();
    }
    feeder.join().unwrap();
    assert!(landed * 2 >= kills, "only {landed} of {kills} kills landed while the client was sending");
    let store = data.join("store.db").display().to_string();
    let truth = bucket_truth(&full_truth(&file));
    let tail = || std::fs::read_to_string(&log).unwrap_or_default();
    check(&store, &truth, tail, |tally| {
        let injected = format!("{kills} SIGKILLs ({landed} mid-stream)");
        report("kill", "serve (HTTP ingest)", "embedded", &injected, &sent.lock().unwrap(), tally);
    });
    assert!(!tail().contains("panicked"), "serve panicked:\n{}", tail());
}

/// The production roles a campaign kills, each in turn.
const ROLES: [&str; 6] = ["aggregator", "archive", "speed", "batch", "api", "source"];

#[test]
fn every_production_role_killed_at_random_moments_loses_and_repeats_nothing() {
    let broker = topk_log::testing::DurableBroker::start();
    let topic = upstream_topic(&broker.addr, 2);
    let mut d = Deployment::on(&broker.addr, 2, &format!("source_topic = {topic:?}\n"));
    let events = knob("EVENTS", 40_000);
    let s = seed() % 1000;
    let http = input(d.dir.path(), "http.ndjson", &events.to_string(), &s.to_string());
    let upstream =
        input_without_duplicates(d.dir.path(), "upstream.ndjson", &(events / 2).to_string(), &(s + 1).to_string());
    for role in ROLES.iter().filter(|r| **r != "api") {
        d.start(role, role, &[]);
    }
    let api = d.start("api", "api", &[]);
    let kills = knob("ROLE_KILLS", 6);
    // The HTTP stream and the upstream topic both last about as long as the kills.
    let lines = lines_of(&http);
    let span = Duration::from_millis(kills * 1500);
    let url = Arc::new(Mutex::new(api));
    let (sent, feeder) = client(&url, lines.clone(), span / lines.len().div_ceil(500) as u32);
    let producer = {
        let (brokers, topic, lines) = (d.brokers.clone(), topic.clone(), lines_of(&upstream));
        std::thread::spawn(move || {
            let chunks = lines.chunks(1000).collect::<Vec<_>>();
            let pause = span / chunks.len() as u32;
            for chunk in chunks {
                produce(&brokers, &topic, 2, chunk);
                std::thread::sleep(pause);
            }
        })
    };
    let mut rng = seed() ^ 0x726f_6c65;
    let mut killed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut landed = 0;
    // Each role in turn from a seeded one, so that every role is killed as often (± 1).
    let first = splitmix64(&mut rng) % ROLES.len() as u64;
    for kill in 1..=kills {
        let role = ROLES[((first + kill) % ROLES.len() as u64) as usize];
        std::thread::sleep(Duration::from_millis(300 + splitmix64(&mut rng) % 1400));
        landed += u64::from(!feeder.is_finished() || !producer.is_finished());
        d.kill(role);
        *killed.entry(role).or_default() += 1;
        eprintln!("role kill {kill}: {role}");
        let url_now = d.start(role, role, &[]);
        if role == "api" {
            *url.lock().unwrap() = url_now;
        }
    }
    feeder.join().unwrap();
    producer.join().unwrap();
    assert!(landed * 2 >= kills, "only {landed} of {kills} kills landed while events were coming in");
    let truth = bucket_truth(&truth_of(&[&http, &upstream]));
    let store = d.store.clone();
    let checked = check(
        &store,
        &truth,
        || d.tails(),
        |tally| {
            let by_role: Vec<String> = killed.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let injected = format!("{kills} SIGKILLs ({landed} mid-stream): {}", by_role.join(", "));
            let mut s = sent.lock().unwrap();
            s.acknowledged += lines_of(&upstream).len() as u64; // acknowledged by the broker to the producer
            report("kill", "production roles", "Kafka (tansu, SQLite) + PostgreSQL", &injected, &s, tally);
        },
    );
    assert_two_days(&checked);
    for role in ROLES {
        let log = d.tail_all(role);
        assert!(!log.contains("panicked"), "{role} panicked:\n{log}");
    }
}

/// A test host of the test's own: a network namespace behind a veth pair, whose far end
/// (`addr`) runs servers; [`TestHost::fault`] cuts or degrades the link.
struct TestHost {
    ns: String,
    links: [String; 2],
    addr: String,
    servers: Vec<Child>,
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestHost {
    fn new() -> TestHost {
        let id = std::process::id();
        let (ns, near, far) = (format!("topk-{id}"), format!("tkh{id}"), format!("tkn{id}"));
        // A /24 of 10.213.0.0/16 per process; .1 is this side, .2 the test host.
        let net = format!("10.213.{}", id % 250 + 1);
        run("ip", &["netns", "add", &ns]);
        let host = TestHost {
            ns: ns.clone(),
            links: [near.clone(), far.clone()],
            addr: format!("{net}.2"),
            servers: Vec::new(),
        };
        run("ip", &["link", "add", &near, "type", "veth", "peer", "name", &far]);
        run("ip", &["link", "set", &far, "netns", &ns]);
        run("ip", &["addr", "add", &format!("{net}.1/24"), "dev", &near]);
        run("ip", &["link", "set", &near, "up"]);
        host.exec(&["ip", "addr", "add", &format!("{net}.2/24"), "dev", &far]);
        host.exec(&["ip", "link", "set", &far, "up"]);
        host.exec(&["ip", "link", "set", "lo", "up"]);
        host
    }

    fn exec(&self, args: &[&str]) {
        run("ip", &[&["netns", "exec", &self.ns][..], args].concat());
    }

    /// Starts `program args` on the test host, in `dir`, and waits for `port` to listen.
    fn start(&mut self, what: &str, dir: &Path, program: &Path, args: &[String], port: u16) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program).args(args).current_dir(dir);
        let addr = format!("{}:{port}", self.addr);
        let hint = "the network tests need root (ip netns) and the server installed";
        self.servers.push(topk_log::testing::start_server(what, cmd, &addr, hint));
    }

    /// Brings about `fault` on the link (replacing any other), or heals it (`None`):
    /// nftables rules on the test host's end drop packets (the kernel here has no
    /// `netem`), and a token bucket on both ends slows the link down.
    fn fault(&self, fault: Option<Fault>) {
        let [near, far] = &self.links;
        // Undo whatever is in place (each may not be: their failures say nothing).
        let ns = ["netns", "exec", &self.ns];
        let _ = Command::new("ip").args(ns).args(["nft", "delete", "table", "inet", "topk_fault"]).output();
        let _ = Command::new("ip").args(ns).args(["tc", "qdisc", "del", "dev", far, "root"]).output();
        let _ = Command::new("tc").args(["qdisc", "del", "dev", near, "root"]).output();
        let drop = match fault {
            None => return,
            Some(Fault::Partition) => "drop".to_string(),
            Some(Fault::Degrade { kbit, loss_percent }) => {
                // Queued up to 100 ms (a delay), dropped beyond that.
                let rate = format!("{kbit}kbit");
                let tbf = ["root", "tbf", "rate", &rate, "burst", "16kb", "latency", "100ms"];
                run("tc", &[&["qdisc", "replace", "dev", near][..], &tbf].concat());
                self.exec(&[&["tc", "qdisc", "replace", "dev", far][..], &tbf].concat());
                format!("numgen random mod 100 < {loss_percent} drop")
            }
        };
        let rules = format!(
            "table inet topk_fault {{\n chain i {{ type filter hook input priority 0; iifname \"{far}\" {drop}; }}\n \
             chain o {{ type filter hook output priority 0; oifname \"{far}\" {drop}; }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("{}-fault.nft", self.ns));
        std::fs::write(&file, rules).unwrap();
        self.exec(&["nft", "-f", &file.display().to_string()]);
    }
}

/// A fault of the link to a test host.
#[derive(Clone, Copy)]
enum Fault {
    /// Every packet dropped, both ways.
    Partition,
    /// A slow link (queueing delay, drops when its queue is full) that also loses packets.
    Degrade { kbit: u32, loss_percent: u32 },
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting the namespace deletes its end of the pair, and so the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip").args(["link", "del", &self.links[0]]).stderr(Stdio::null()).status();
    }
}

/// A PostgreSQL server of the test host's own, in a fresh cluster owned by `postgres`;
/// returns its URL.
fn start_postgres(host: &mut TestHost, dir: &Path) -> String {
    let out = Command::new("pg_config").arg("--bindir").output().expect("pg_config");
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let data = dir.join("pgdata");
    std::fs::create_dir_all(&data).unwrap();
    run("chown", &["-R", "postgres", &dir.display().to_string()]);
    let initdb = bin.join("initdb").display().to_string();
    let data_s = data.display().to_string();
    run("runuser", &["-u", "postgres", "--", &initdb, "-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"]);
    // The roles connect over the veth pair, from this side's address.
    let hba = data.join("pg_hba.conf");
    let mut text = std::fs::read_to_string(&hba).unwrap();
    text.push_str("host all all 10.213.0.0/16 trust\n");
    std::fs::write(&hba, text).unwrap();
    let args: Vec<String> = ["-u", "postgres", "--", &bin.join("postgres").display().to_string(), "-D", &data_s]
        .iter()
        .map(|s| s.to_string())
        .chain(["-c".into(), format!("listen_addresses={}", host.addr)])
        .chain(["-c".into(), format!("unix_socket_directories={data_s}"), "-p".into(), "5432".into()])
        .collect();
    host.start("postgres-testhost", dir, Path::new("/usr/sbin/runuser"), &args, 5432);
    format!("postgres://postgres@{}:5432/postgres", host.addr)
}

/// The resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
        / 1024
}

#[test]
fn broker_and_postgres_partitioned_then_degraded_lose_and_repeat_nothing() {
    let dir = tempfile::Builder::new().prefix("topk-testhost-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut host = TestHost::new();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let brokers = format!("{}:9092", host.addr);
    let tansu = topk_log::testing::tansu_bin();
    host.start(
        "tansu-testhost",
        &broker_dir,
        &tansu,
        &topk_log::testing::tansu_args(&brokers, "sqlite://tansu.db"),
        9092,
    );
    let pg = start_postgres(&mut host, &dir.path().join("pg"));
    let mut d = Deployment::on_store(&brokers, &pg, 2, "");
    let roles = ["aggregator", "archive", "speed", "batch"];
    for role in roles {
        d.start(role, role, &[]);
    }
    let api = d.start("api", "api", &[]);
    let file =
        input(d.dir.path(), "events.ndjson", &knob("EVENTS", 40_000).to_string(), &(seed() % 1000 + 7).to_string());
    let lines = lines_of(&file);
    let secs = knob("PARTITION_SECS", 6);
    // The stream lasts through both faults and a little after.
    let span = Duration::from_secs(2 * secs + 8);
    let url = Arc::new(Mutex::new(api));
    let (sent, feeder) = client(&url, lines.clone(), span / lines.len().div_ceil(500) as u32);
    let all = [&roles[..], &["api"]].concat();
    let sample = |d: &Deployment| all.iter().map(|r| (*r, rss_mib(d.pid(r)))).collect::<BTreeMap<_, _>>();
    std::thread::sleep(Duration::from_secs(2));
    let before = sample(&d);

    host.fault(Some(Fault::Partition));
    let cut = Instant::now();
    let mut peak = before.clone();
    // Acknowledged once any request in flight at the cut had its chance to finish.
    let mut settled = None;
    while cut.elapsed() < Duration::from_secs(secs) {
        if settled.is_none() && cut.elapsed() > Duration::from_secs(1) {
            settled = Some(sent.lock().unwrap().acknowledged);
        }
        for (role, mib) in sample(&d) {
            let p = peak.get_mut(role).unwrap();
            *p = (*p).max(mib);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let acknowledged_while_cut = sent.lock().unwrap().acknowledged - settled.unwrap();
    host.fault(None);
    std::thread::sleep(Duration::from_secs(2));
    host.fault(Some(Fault::Degrade { kbit: 2000, loss_percent: 5 }));
    std::thread::sleep(Duration::from_secs(secs));
    host.fault(None);
    feeder.join().unwrap();

    assert_eq!(acknowledged_while_cut, 0, "the API acknowledged events while the broker was cut off");
    let memory: Vec<String> = all.iter().map(|r| format!("{r} {}→{} MiB", before[r], peak[r])).collect();
    for r in &all {
        assert!(peak[r] <= before[r] + 256, "{r} grew from {} to {} MiB while partitioned", before[r], peak[r]);
    }
    let truth = bucket_truth(&full_truth(&file));
    let checked = check(
        &d.store.clone(),
        &truth,
        || d.tails(),
        |tally| {
            let injected = format!("partition {secs} s (every packet dropped), then {secs} s degraded (2 Mbit/s, queue ≤ 100 ms, 5 % loss); RSS before→peak while cut: {}", memory.join(", "));
            report(
                "network",
                "broker + PostgreSQL host",
                "Kafka (tansu, SQLite) + PostgreSQL",
                &injected,
                &sent.lock().unwrap(),
                tally,
            );
        },
    );
    assert_two_days(&checked);
}

#[test]
fn a_full_disk_refuses_ingest_clearly_and_recovers_by_itself_and_after_a_restart() {
    let fs = topk_log::testing::Tmpfs::mount(256 << 20);
    data_dir_fault(&fs.path, "disk full", "embedded (tmpfs 256 MiB)", "No space left on device", || {
        let filler = fs.fill(0);
        Box::new(move || std::fs::remove_file(&filler).unwrap())
    });
}

#[test]
fn io_errors_on_the_data_directory_refuse_ingest_clearly_and_heal_by_themselves_and_after_a_restart() {
    FaultFs::mount().fail_under_serve("", "I/O errors", "embedded (FUSE, every change EIO)");
}

/// A real disk's error mostly comes at fsync, after the writes reached the page cache:
/// what was written but not made durable must not be acknowledged, nor kept.
#[test]
fn fsync_errors_alone_refuse_ingest_clearly_and_heal_by_themselves_and_after_a_restart() {
    FaultFs::mount().fail_under_serve("fsync", "fsync errors", "embedded (FUSE, fsync EIO)");
}

/// `crates/topk/tests/faultfs.py` mounted over a directory of the test's own: while its
/// switch file exists, every write, fsync, create, rename or truncate under it fails with
/// EIO (a failing disk), or only fsync if the switch says `fsync`; reads still work.
struct FaultFs {
    mount: PathBuf,
    switch: PathBuf,
    _backing: tempfile::TempDir,
    daemon: Child,
}

impl FaultFs {
    fn mount() -> FaultFs {
        let backing = tempfile::tempdir().unwrap();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mount = std::env::temp_dir().join(format!("topk-faultfs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&mount).unwrap();
        let switch = backing.path().with_extension("broken");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faultfs.py");
        let daemon = Command::new("python3")
            .arg(&script)
            .args([backing.path(), &mount, &switch])
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut fs = FaultFs { mount, switch, _backing: backing, daemon };
        let mounted = || std::fs::read_to_string("/proc/mounts").unwrap().contains(&*fs.mount.to_string_lossy());
        let started = Instant::now();
        while !mounted() {
            if let Ok(Some(_)) = fs.daemon.try_wait() {
                let mut err = String::new();
                std::io::Read::read_to_string(fs.daemon.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("faultfs.py did not mount (it needs fusepy from PyPI, libfuse2 and root):\n{err}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "faultfs.py did not mount within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        fs
    }

    /// [`data_dir_fault`] with this file system failing as the switch's `mode` says ("":
    /// every change, "fsync": only fsync) while it is switched on.
    fn fail_under_serve(&self, mode: &str, fault: &str, backend: &str) {
        data_dir_fault(&self.mount, fault, backend, "Input/output error", || {
            std::fs::write(&self.switch, mode).unwrap();
            Box::new(|| std::fs::remove_file(&self.switch).unwrap())
        });
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.switch);
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

/// `serve` with its data directory under `root`, fed by the retrying client; mid-stream
/// `inject` breaks the file system and returns what heals it. Ingest must be refused
/// with a 503 whose message `says` why, `/healthz` must be 503 and the process up; once
/// healed, the client's retries must go through without a restart; then a SIGKILL, a
/// restart and more sales. Nothing refused may be counted, nothing acknowledged lost.
fn data_dir_fault<'a>(
    root: &Path,
    fault: &str,
    backend: &str,
    says: &str,
    inject: impl FnOnce() -> Box<dyn FnOnce() + 'a>,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = root.join("data");
    let log = dir.path().join("serve.log");
    let start = || serve_logged(&data, &["--flush-interval-ms", "200"], Some(&log));
    let mut s = start();
    let s0 = seed() % 1000 + 3;
    let first = input(dir.path(), "first.ndjson", &knob("EVENTS", 40_000).to_string(), &s0.to_string());
    let url = Arc::new(Mutex::new(s.url.clone()));
    let lines = lines_of(&first);
    let (sent, feeder) = client(&url, lines.clone(), Duration::from_secs(12) / lines.len().div_ceil(500) as u32);
    std::thread::sleep(Duration::from_secs(2));
    let heal = inject();
    wait_for("ingest to be refused", Duration::from_secs(30), || sent.lock().unwrap().refusals.contains_key(&503));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "serve exited on {fault}:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let refused = sent.lock().unwrap().refusals[&503].clone();
    assert!(refused.1.contains(says), "a 503 that says why ({says}): {}", refused.1);
    let health = reqwest::blocking::get(format!("{}/healthz", s.url)).unwrap();
    assert_eq!(health.status(), 503, "healthz during {fault}");
    heal();
    // The file system is back: the client's retries go through without a restart.
    feeder.join().unwrap();
    wait_for("serve to report healthy again", Duration::from_secs(60), || {
        reqwest::blocking::get(format!("{}/healthz", s.url)).is_ok_and(|r| r.status() == 200)
    });
    // Then a crash and a restart, and more sales.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    s = start();
    *url.lock().unwrap() = s.url.clone();
    let second = input(dir.path(), "second.ndjson", "5000", &(s0 + 1).to_string());
    let (sent2, feeder) = client(&url, lines_of(&second), Duration::ZERO);
    feeder.join().unwrap();

    let truth = bucket_truth(&truth_of(&[&first, &second]));
    let store = data.join("store.db").display().to_string();
    let tail = || std::fs::read_to_string(&log).unwrap_or_default();
    check(&store, &truth, tail, |tally| {
        let mut s = sent.lock().unwrap();
        let s2 = sent2.lock().unwrap();
        (s.batches, s.attempts, s.acknowledged) =
            (s.batches + s2.batches, s.attempts + s2.attempts, s.acknowledged + s2.acknowledged);
        s.bad_rejected += s2.bad_rejected;
        let injected = format!(
            "{fault} ({} refusals: {:?}), healed while running; then a SIGKILL and a restart",
            refused.0,
            refused.1.trim()
        );
        report(fault, "serve (HTTP ingest)", backend, &injected, &s, tally);
    });
    assert!(!tail().contains("panicked"), "serve panicked:\n{}", tail());
}
