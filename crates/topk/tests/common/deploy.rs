//! A production deployment for tests: every role as its own `topk` process, the logs
//! on Kafka (the test broker of `topk_log::testing`) and the store on PostgreSQL (a
//! schema of its own).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use topk_store::testing::Postgres;

/// Two whole days in the past, so that every granularity up to the year is closed.
pub const START: &str = "2025-06-02";
pub const DAY0_MS: i64 = 1_748_822_400_000; // 2025-06-02T00:00:00Z

/// One deployment: a config file, a PostgreSQL schema, topics of its own, and the role
/// processes (killed when dropped).
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The store's URL: a schema of its own in the test database, unless given.
    pub store: String,
    /// The schema behind `store`, dropped with the deployment (none for a given store).
    _pg: Option<Postgres>,
    /// Of the topics and groups (`kafka_prefix`).
    pub prefix: String,
    /// The `s3://` archive, when there is one.
    pub archive: Option<String>,
    /// The Kafka brokers it runs on.
    pub brokers: String,
    roles: Vec<(String, Child)>,
    /// Environment of every role process.
    env: Vec<(String, String)>,
}

impl Deployment {
    pub fn new(partitions: u32) -> Deployment {
        Deployment::with(partitions, "")
    }

    /// With `extra` lines of configuration.
    pub fn with(partitions: u32, extra: &str) -> Deployment {
        Deployment::on(&topk_log::testing::kafka_brokers(), partitions, extra)
    }

    /// On the Kafka `brokers`, with `extra` lines of configuration.
    pub fn on(brokers: &str, partitions: u32, extra: &str) -> Deployment {
        let pg = Postgres::new();
        let mut d = Deployment::on_store(brokers, &pg.url.clone(), partitions, extra);
        d._pg = Some(pg);
        d
    }

    /// On the Kafka `brokers` and the PostgreSQL `store` (a URL), with `extra` lines of
    /// configuration.
    pub fn on_store(brokers: &str, store: &str, partitions: u32, extra: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let prefix = format!("e2e-{nanos}.");
        let config = dir.path().join("prod.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\nkafka_brokers = {brokers:?}\nkafka_prefix = {prefix:?}\nstore = {store:?}\n\
                 partitions = {partitions}\nflush_interval_ms = 200\nmax_entries = 5000\nidle_timeout_ms = 2000\n\
                 speed_write_interval_ms = 200\nhour_retention_days = 0\n{extra}",
                data = dir.path().join("shared").display().to_string(),
            ),
        )
        .unwrap();
        Deployment {
            dir,
            config,
            store: store.to_string(),
            _pg: None,
            prefix,
            archive: None,
            brokers: brokers.into(),
            roles: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts `topk <role> <args>` and returns its HTTP address.
    pub fn start(&mut self, name: &str, role: &str, args: &[&str]) -> String {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_file(name)).unwrap();
        let mut child = topk_cmd()
            .arg(role)
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("TOPK_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let Some(url) = first.split_whitespace().find(|w| w.starts_with("http://")) else {
            panic!("{name} did not start:\n{}", self.tail(name));
        };
        let url = url.to_string();
        self.roles.push((name.to_string(), child));
        url
    }

    pub fn kill(&mut self, name: &str) {
        let i = self.roles.iter().position(|(n, _)| n == name).expect("role is running");
        let (_, mut child) = self.roles.remove(i);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// Sets an environment variable of every role started from now on.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.into(), value.into()));
    }

    /// A running role's process id.
    pub fn pid(&self, role: &str) -> u32 {
        self.roles.iter().find(|(n, _)| n == role).expect("role is running").1.id()
    }

    /// Sends a role the signal `name` (`STOP`, `CONT`, …).
    pub fn signal(&self, role: &str, name: &str) {
        let (_, child) = self.roles.iter().find(|(n, _)| n == role).expect("role is running");
        let st = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
        assert!(st.success(), "kill -{name} {role}");
    }

    /// Stops a role with SIGTERM and waits for it to exit.
    pub fn stop(&mut self, name: &str) {
        let i = self.roles.iter().position(|(n, _)| n == name).expect("role is running");
        let (_, mut child) = self.roles.remove(i);
        let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{name} exited with {status} on SIGTERM:\n{}", self.tail(name));
    }

    /// A role's whole log (every run of it).
    pub fn tail_all(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_file(name)).unwrap_or_default()
    }

    /// The WARN and ERROR lines of a role's log (every run of it).
    pub fn warnings(&self, name: &str) -> Vec<String> {
        self.tail_all(name).lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).map(str::to_string).collect()
    }

    /// The end of a role's log, for failure messages.
    pub fn tail(&self, name: &str) -> String {
        let text = self.tail_all(name);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn tails(&self) -> String {
        self.roles.iter().map(|(n, _)| format!("--- {n}\n{}", self.tail(n))).collect::<Vec<_>>().join("\n")
    }

    /// Puts the archive on the test S3 endpoint (`s3://…`; the roles read the endpoint and
    /// credentials from `AWS_*` variables, as in production).
    pub fn with_s3_archive(mut self) -> Deployment {
        let url = format!("s3://{}/{}archive", topk_archive::testing::s3_bucket(), self.prefix);
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(&format!("archive = {url:?}\n"));
        std::fs::write(&self.config, text).unwrap();
        self.archive = Some(url);
        for (k, v) in topk_archive::testing::s3_options() {
            self.env.push((k.to_uppercase(), v.to_string()));
        }
        self
    }

    /// Waits until the store holds exactly `truth`, then checks every top list.
    pub fn assert_exact(&self, truth: &BucketSums) {
        wait_exact(&self.store, truth, || self.tails());
        assert_two_days(&assert_store_exact(&self.store, truth, 1000));
    }
}

/// That the buckets checked (of [`assert_store_exact`]) are those of [`input`]'s two days.
pub fn assert_two_days(checked: &std::collections::BTreeMap<String, usize>) {
    assert_eq!((checked["hour"], checked["day"], checked["year"]), (48, 2, 1), "{checked:?}");
}

/// Waits up to 3 minutes for the store at `location` to hold exactly `truth` and returns
/// what it holds then (equal or not: the caller tallies and asserts); `logs` are printed
/// if it never does.
pub fn wait_exact(location: &str, truth: &BucketSums, logs: impl Fn() -> String) -> BucketSums {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = store_sums(location);
        if got == *truth {
            return got;
        }
        if Instant::now() > deadline {
            eprintln!("the store did not reach the ground truth; logs:\n{}", logs());
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, child) in &mut self.roles {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn input(dir: &Path, name: &str, events: &str, seed: &str) -> PathBuf {
    generated(dir, name, events, seed, "0.01")
}

/// As [`input`], with no repeated event id: a test where dedup must not hide a double count.
pub fn input_without_duplicates(dir: &Path, name: &str, events: &str, seed: &str) -> PathBuf {
    generated(dir, name, events, seed, "0")
}

fn generated(dir: &Path, name: &str, events: &str, seed: &str, duplicate_rate: &str) -> PathBuf {
    let path = dir.join(name);
    let args = ["--events", events, "--products", "3000", "--start", START, "--days", "2", "--seed", seed];
    gen(&path, &[&args[..], &["--refund-rate", "0.02", "--duplicate-rate", duplicate_rate]].concat());
    path
}

pub fn replay_to(api: &str, files: &[&Path]) {
    let out = topk_cmd().arg("replay").args(files).args(["--server", api]).output().unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn truth_of(files: &[&Path]) -> Sums {
    let mut all = String::new();
    for f in files {
        all.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let joined = files[0].with_extension("all");
    std::fs::write(&joined, all).unwrap();
    full_truth(&joined)
}

/// The sum of a metric's samples on a role's /metrics (0 if it cannot be read).
pub fn metric_sum(url: &str, name: &str) -> f64 {
    let Ok(text) = reqwest::blocking::get(format!("{url}/metrics")).and_then(|r| r.text()) else { return 0.0 };
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Produces each value as one message to partition 0 of `topic`.
/// Creates another team's topic of sale events with `partitions` partitions on `brokers`,
/// before topk starts, as it would exist in production; returns its name.
pub fn upstream_topic(brokers: &str, partitions: u32) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let topic = format!("upstream-sales-{nanos}");
    topk_log::KafkaLog::open(topk_log::KafkaConfig::new(brokers, &topic, partitions)).unwrap();
    topic
}

/// Produces `values` (JSON sale events, or anything) to `topic`, over its `partitions` by
/// the hash of the value's `product_id`, as an upstream topic keyed by product would be.
pub fn produce(brokers: &str, topic: &str, partitions: i32, values: &[String]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (i, v) in values.iter().enumerate() {
        let product = serde_json::from_str::<serde_json::Value>(v)
            .ok()
            .and_then(|e| e["product_id"].as_str().map(str::to_string));
        let partition = product.map_or(i as u64, |p| {
            p.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        });
        let record =
            BaseRecord::<(), str>::to(topic).partition((partition % partitions as u64) as i32).payload(v.as_str());
        // A full local queue: let it drain, then send again.
        let mut record = Some(record);
        while let Some(r) = record.take() {
            if let Err((e, r)) = producer.send(r) {
                assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
                std::thread::sleep(Duration::from_millis(10));
                record = Some(r);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
