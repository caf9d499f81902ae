//! Production mode: every role as its own `topk` process, the logs on Kafka (the test
//! broker of `topk_log::testing`) and the store on PostgreSQL (a schema of its own).
//! The exact answers must equal the ground truth: with two aggregators sharing the
//! partitions, and with an aggregator killed with SIGKILL at random moments.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::deploy::*;
use common::*;

#[test]
fn separate_role_processes_on_kafka_postgres_and_s3_answer_exactly() {
    let mut d = Deployment::new(4).with_s3_archive();
    d.start("aggregator-a", "aggregator", &["--aggregate-partitions", "0-1"]);
    d.start("aggregator-b", "aggregator", &["--aggregate-partitions", "2-3"]);
    d.start("archive", "archive", &[]);
    d.start("speed", "speed", &[]);
    d.start("batch", "batch", &[]);
    let api = d.start("api", "api", &[]);
    let file = input(d.dir.path(), "events.ndjson", "60000", "21");
    replay_to(&api, &[&file]);
    let truth = ground_truth(&file);
    // Every (breakdown, granularity, bucket, product) of the store equals the truth.
    let full = bucket_truth(&full_truth(&file));
    d.assert_exact(&full);

    // The API's exact answers equal the truth: the day's top 10 by quantity, globally and
    // in Germany.
    for (filter, breakdown) in [("", ""), ("&country=DE", "country=DE")] {
        let mut want: Vec<(String, i64)> = full
            .iter()
            .filter(|((g, b, _), _)| g == "day" && *b == DAY0_MS)
            .filter_map(|((_, _, p), (c, _))| {
                let (in_b, p) = p.split_once('\t').unwrap_or(("", p));
                (in_b == breakdown).then(|| (p.to_string(), *c))
            })
            .collect();
        want.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        want.truncate(10);
        assert_eq!(want.len(), 10, "{breakdown:?}");
        let url = format!("{api}/api/v1/top?granularity=day&start={START}T00:00:00Z&k=10{filter}");
        let a: serde_json::Value = reqwest::blocking::get(&url).unwrap().json().unwrap();
        assert_eq!(a["exact"], true, "{a}");
        let got: Vec<(String, i64)> = a["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["product_id"].as_str().unwrap().to_string(), r["count"].as_i64().unwrap()))
            .collect();
        assert_eq!(got, want, "{breakdown:?}");
    }
    // The Parquet files are on S3, and nowhere on disk.
    let url = d.archive.as_deref().unwrap();
    let root = topk_archive::Root::parse_with(url, &topk_archive::testing::s3_options()).unwrap();
    let archived = archive_root_sums(&root);
    assert_sums_eq(&archived, &truth);
    assert!(!d.dir.path().join("shared/archive").exists());
    // Every role process reports healthy.
    let health = reqwest::blocking::get(format!("{api}/healthz")).unwrap();
    assert!(health.status().is_success());
}

#[test]
fn aggregators_in_a_consumer_group_take_over_the_partitions_of_a_stopped_one() {
    let mut d = Deployment::with(4, "aggregate_partitions = \"group\"\n");
    let a = d.start("aggregator-a", "aggregator", &[]);
    let b = d.start("aggregator-b", "aggregator", &[]);
    d.start("archive", "archive", &[]);
    d.start("batch", "batch", &[]);
    let api = d.start("api", "api", &[]);
    // Each aggregator reports the partitions it owns (its flush-lag samples).
    let owned = |url: &str| {
        let text = reqwest::blocking::get(format!("{url}/metrics")).and_then(|r| r.text()).unwrap_or_default();
        text.lines().filter(|l| l.starts_with("topk_flush_lag_events{")).count()
    };
    wait_for("the group to split the partitions", Duration::from_secs(60), || owned(&a) == 2 && owned(&b) == 2);
    let first = input(d.dir.path(), "first.ndjson", "20000", "51");
    replay_to(&api, &[&first]);
    // SIGTERM: a flushes what it holds and leaves the group. (After a SIGKILL, Kafka
    // evicts the member when its session times out; tansu 0.6 keeps it assigned, so
    // that case is left to a real broker.)
    d.stop("aggregator-a");
    wait_for("b to own all four", Duration::from_secs(60), || owned(&b) == 4);
    let second = input(d.dir.path(), "second.ndjson", "20000", "52");
    replay_to(&api, &[&second]);
    d.assert_exact(&bucket_truth(&truth_of(&[&first, &second])));
}

/// A frozen aggregator (SIGSTOP: a hung node) is replaced by another for the same
/// partitions; woken, it flushes what it held and goes on working beside its replacement.
/// Its stale flush, and every flush either writes after the other's unseen one, must not
/// count (topk_aggregator's "Fencing").
#[test]
fn a_frozen_aggregator_woken_beside_its_replacement_counts_nothing_twice() {
    let mut d = Deployment::new(2);
    // It flushes seldom, so that it holds counted, unflushed events when it freezes.
    let old = d.start("aggregator-old", "aggregator", &["--flush-interval-ms", "8000"]);
    d.start("archive", "archive", &[]);
    d.start("speed", "speed", &[]);
    d.start("batch", "batch", &[]);
    let api = d.start("api", "api", &[]);
    let first = input(d.dir.path(), "first.ndjson", "20000", "61");
    replay_to(&api, &[&first]);
    wait_for("the old aggregator to flush the first file", Duration::from_secs(30), || {
        metric_sum(&old, "topk_aggregated_events_total") >= 19_000.0
    });
    // Too few for a flush by size: the old aggregator consumes them and holds them.
    let held = input(d.dir.path(), "held.ndjson", "2000", "62");
    replay_to(&api, &[&held]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(metric_sum(&old, "topk_flush_lag_events") > 0.0, "the old aggregator flushed what it should hold");
    d.signal("aggregator-old", "STOP");
    d.start("aggregator-new", "aggregator", &[]);
    let second = input(d.dir.path(), "second.ndjson", "20000", "63");
    replay_to(&api, &[&second]);
    d.signal("aggregator-old", "CONT");
    // Both now aggregate the same partitions, until the old one is stopped.
    let third = input(d.dir.path(), "third.ndjson", "20000", "64");
    replay_to(&api, &[&third]);
    std::thread::sleep(Duration::from_secs(3));
    d.stop("aggregator-old");
    d.assert_exact(&bucket_truth(&truth_of(&[&first, &held, &second, &third])));
    // What this is about happened: the old aggregator's late flush was ignored, and it said so.
    let (old_log, archive_log) = (d.tail_all("aggregator-old"), d.tail_all("archive"));
    assert!(old_log.contains("another aggregator wrote it"), "no superseded flush:\n{}", d.tail("aggregator-old"));
    assert!(archive_log.contains("ignoring a flush written by a superseded aggregator"), "{archive_log}");
}

#[test]
fn aggregator_killed_at_random_moments_on_kafka_and_postgres_loses_and_repeats_nothing() {
    let mut d = Deployment::new(2);
    let aggregator = d.start("aggregator", "aggregator", &[]);
    d.start("archive", "archive", &[]);
    d.start("batch", "batch", &[]);
    let api = d.start("api", "api", &[]);
    let files: Vec<PathBuf> =
        (0..20).map(|i| input(d.dir.path(), &format!("part-{i}.ndjson"), "6000", &format!("{}", 40 + i))).collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    // Ingest in the background while the aggregator is killed and restarted.
    let feeder = {
        let (api, files) = (api.clone(), files.clone());
        std::thread::spawn(move || {
            for f in &files {
                replay_to(&api, &[f]);
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    let want_kills = std::env::var("TOPK_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut rng = 0x006b_6166_6b61_u64;
    let mut aggregator = aggregator;
    let mut busy = 0;
    for kill in 1..=want_kills {
        // Startup and recovery take about a second: most kills land after it.
        std::thread::sleep(Duration::from_millis(1000 + splitmix64(&mut rng) % 1500));
        // Events this aggregator process counted so far: > 0 means the kill interrupts work.
        let counted = metric_sum(&aggregator, "topk_aggregated_events_total");
        busy += usize::from(counted > 0.0 && !feeder.is_finished());
        d.kill("aggregator");
        eprintln!("kill {kill}: the aggregator had counted {counted} events");
        aggregator = d.start("aggregator", "aggregator", &[]);
    }
    feeder.join().unwrap();
    assert!(busy * 2 >= want_kills, "only {busy} of {want_kills} kills interrupted an aggregator at work");
    d.assert_exact(&bucket_truth(&truth_of(&refs)));
}

#[test]
fn a_burst_of_bad_events_pauses_the_kafka_source_and_resume_loses_no_good_event() {
    let topic = upstream_topic(&topk_log::testing::kafka_brokers(), 1);
    let extra = format!("source_topic = {topic:?}\nsource_reject_window = 100\nsource_max_reject_rate = 0.5\n");
    let mut d = Deployment::with(2, &extra);
    let url = d.start("serve", "serve", &[]);
    let good = input(d.dir.path(), "good.ndjson", "600", "77");
    let lines: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(str::to_string).collect();
    let bad: Vec<String> = (0..80)
        .map(|i| match i % 3 {
            0 => format!("{{\"event_id\":\"bad-{i}\",\"product_id\":\"p1\",\"ts\":\"yesterday\"}}"),
            1 => "not json at all".to_string(),
            _ => format!("{{\"event_id\":\"bad-{i}\"}}"),
        })
        .collect();
    let upstream: Vec<String> = [&lines[..300], &bad[..], &lines[300..]].concat();
    produce(&d.brokers, &topic, 1, &upstream);

    let get = |path: &str| reqwest::blocking::get(format!("{url}{path}")).unwrap();
    wait_for("the source to pause", Duration::from_secs(60), || get("/healthz").status() == 503);
    let health = get("/healthz").text().unwrap();
    assert!(health.contains("source paused") && health.contains("were rejected (limit 50%)"), "{health}");
    let status: serde_json::Value = get("/api/v1/sources/kafka").json().unwrap();
    let consumed = status["consumed"].as_u64().unwrap();
    assert!((350..=390).contains(&consumed), "paused within a tenth of a window of the 50th bad message: {status}");
    let metrics = reqwest::blocking::get(format!("{url}/metrics")).and_then(|r| r.text());
    let Ok(metrics) = metrics else { panic!("{metrics:?}\n{}", d.tail("serve")) };
    assert!(metrics.contains(&format!("topk_source_paused{{topic=\"{topic}\"}} 1")), "{metrics}");
    for name in SAMPLE_MONITORING.into_iter().flat_map(metric_names_used).filter(|n| source_only(n)) {
        assert!(exports(&metrics, &name), "the sample monitoring uses {name}, which the source does not export");
    }
    std::thread::sleep(Duration::from_secs(1));
    let still: serde_json::Value = get("/api/v1/sources/kafka").json().unwrap();
    assert_eq!(still["consumed"], status["consumed"], "nothing is consumed while paused");

    let out = topk_cmd().args(["resume", "--server", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "source resumed");
    wait_for("the rest of the topic", Duration::from_secs(60), || {
        get("/api/v1/sources/kafka").json::<serde_json::Value>().unwrap()["consumed"] == upstream.len()
    });
    assert_eq!(get("/healthz").status(), 200, "the rest of the burst stays under the limit");

    // Every bad message is in the dead-letter topic, with its reason and origin.
    let dead = topk_log::KafkaConfig::new(&d.brokers, &format!("{}dead-letter", d.prefix), 2);
    let mut letters = Vec::new();
    for p in 0..2 {
        let mut reader = topk_log::TopicReader::open(&dead, p, 0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            letters.extend(reader.poll(100, Duration::from_millis(200)).unwrap().into_iter().map(|(_, v)| v));
        }
    }
    letters.sort();
    let mut want: Vec<Vec<u8>> = bad.iter().map(|b| b.as_bytes().to_vec()).collect();
    want.sort();
    assert_eq!(letters, want);

    // And every good event is counted exactly once.
    d.assert_exact(&bucket_truth(&full_truth(&good)));
}

/// The Kafka source SIGKILLed at random moments while it reads another team's topic:
/// every sale is counted once (its positions in the upstream partitions are recorded with
/// the events it appends, and a restart resumes from them).
///
/// On a broker of its own on SQLite: the shared in-memory tansu reported a high watermark
/// behind what it had acknowledged (58,176 of 60,000 messages right after the producer's
/// flush), and with the source killed repeatedly its consumers never saw thousands of
/// acknowledged events; on SQLite neither happened.
///
/// The input has no duplicate event ids and the dedup window is off, so a message the
/// source appended twice would be counted twice: nothing here hides a re-append. (With
/// duplicates in the input the ground truth, which drops every repeated id, can differ
/// for a reason that is not a re-append: see the README on a lagging upstream partition.)
#[test]
fn kafka_source_killed_at_random_moments_loses_and_repeats_nothing() {
    let broker = topk_log::testing::DurableBroker::start();
    let topic = upstream_topic(&broker.addr, 2);
    let mut d = Deployment::on(&broker.addr, 2, &format!("source_topic = {topic:?}\ndedup_window_ms = 0\n"));
    let good = input_without_duplicates(d.dir.path(), "upstream.ndjson", "60000", "91");
    let lines: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(str::to_string).collect();
    produce(&d.brokers, &topic, 2, &lines);
    for role in ["aggregator", "archive", "batch"] {
        d.start(role, role, &[]);
    }
    let consumed = |url: &str| {
        reqwest::blocking::get(format!("{url}/api/v1/sources/kafka"))
            .and_then(|r| r.json::<serde_json::Value>())
            .map_or(0, |v| v["consumed"].as_u64().unwrap_or(0))
    };
    let mut source = d.start("source", "source", &[]);
    let mut rng = 0x736f_7572_6365_u64;
    let mut total = 0;
    for kill in 1..=6 {
        // Each kill lands while the source works: once it consumes, at a random moment.
        wait_for("the source to consume", Duration::from_secs(60), || consumed(&source) > 0);
        std::thread::sleep(Duration::from_millis(splitmix64(&mut rng) % 600));
        let n = consumed(&source);
        d.kill("source");
        eprintln!("kill {kill}: the source had consumed {n} messages");
        total += n;
        source = d.start("source", "source", &[]);
    }
    assert!(total < lines.len() as u64, "the kills came after the source had read everything");
    d.assert_exact(&bucket_truth(&full_truth(&good)));
}

/// `kafka_properties` (and `TOPK_KAFKA_PROPERTY_*`, which win) reach librdkafka: valid ones
/// run, an invalid one stops the process with librdkafka's word on it.
#[test]
fn kafka_properties_from_the_file_and_the_environment_reach_librdkafka() {
    let mut d = Deployment::with(2, "[kafka_properties]\n\"client.id\" = \"topk-test\"\n");
    let api = d.start("api", "api", &[]);
    assert_eq!(reqwest::blocking::get(format!("{api}/healthz")).unwrap().status(), 200);
    let run = |env: &[(&str, &str)]| {
        let out = topk_cmd()
            .args(["api", "--config"])
            .arg(&d.config)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            // Not UTF-8: skipped while the TOPK_KAFKA_PROPERTY_* variables are read, not a panic.
            .env(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"NOT_UTF8_\xff"), "x")
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with {env:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[("TOPK_KAFKA_PROPERTY_SECURITY_PROTOCOL", "carrier_pigeon")]);
    assert!(err.contains("security.protocol") && err.contains("carrier_pigeon"), "{err}");
    let err = run(&[("TOPK_KAFKA_PROPERTY_CLIENT_ID", ""), ("TOPK_KAFKA_PROPERTY_NO_SUCH_THING", "1")]);
    assert!(err.contains("no.such.thing"), "{err}");
}
