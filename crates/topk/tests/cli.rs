//! The command line as a user meets it: bad input files, pipes, interrupts and typos get
//! a clear word and the right exit status, and leave nothing behind.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn line(id: &str, product: &str) -> String {
    format!("{{\"event_id\":\"{id}\",\"ts\":\"2026-11-02T10:00:00Z\",\"product_id\":\"{product}\",\"quantity\":1}}\n")
}

#[test]
fn a_line_over_64_mib_is_rejected_alone_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    f.write_all(line("a", "p1").as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\n").unwrap();
    f.write_all(line("b", "p1").as_bytes()).unwrap();
    f.write_all(line("c", "p2").as_bytes()).unwrap();
    drop(f);
    let data = dir.path().join("data");
    let out = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("line 2: the line is longer than 64 MiB (104857601 bytes): skipped"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 events accepted"));
    let sums = archive_sums(&data.join("archive"));
    assert_eq!(sums.values().map(|(c, _)| c).sum::<i64>(), 3, "every valid line, once");
    // The position past the long line was recorded: a rerun has nothing to do.
    let again = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already replayed completely"));
}

#[test]
fn a_replay_that_accepts_nothing_fails_and_names_the_likely_format() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "200", "--format", "csv"]);
    let data = dir.path().join("data");
    let out = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("every line was rejected: it looks like CSV: name the file .csv or pass --format csv"),
        "{stderr}"
    );
    assert!(stderr.contains("no event was accepted: all 201 lines were rejected"), "{stderr}");
    // The same file read as what it is works.
    let out = topk_cmd().arg("replay").arg(&input).args(["--format", "csv", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_closed_stdout_ends_gen_quietly() {
    let mut child =
        topk_cmd().args(["gen", "--events", "1000000"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"event_id\""), "{first}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no 'Broken pipe' error");
}

#[test]
fn failed_commands_say_why_and_leave_no_data_directory_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.ndjson");
    let out = topk_cmd().arg("replay").arg(&missing).arg("--data-dir").arg(&data).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.ndjson"));
    for args in [&["batch", "status"][..], &["accuracy"][..]] {
        let out = topk_cmd().args(args).arg("--data-dir").arg(&data).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("nothing has run with this data directory yet"), "{stderr}");
    }
    assert!(!data.exists(), "a failed command created {}", data.display());
    // A server address without its scheme gets a plain answer, not "builder error".
    let input = dir.path().join("one.ndjson");
    std::fs::write(&input, line("a", "p")).unwrap();
    let out = topk_cmd().arg("replay").arg(&input).args(["--server", "127.0.0.1:18500"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("give the server's URL with its scheme"), "{stderr}");
    // Read-only commands list only the settings that apply to them.
    for args in [&["accuracy", "--help"][..], &["batch", "status", "--help"][..]] {
        let help = String::from_utf8_lossy(&topk_cmd().args(args).output().unwrap().stdout).into_owned();
        assert!(help.contains("--data-dir") && help.contains("--store"), "{help}");
        assert!(!help.contains("--flush-interval-ms") && !help.contains("--kafka-brokers"), "{help}");
    }
    let help = String::from_utf8_lossy(&topk_cmd().args(["gen", "--help"]).output().unwrap().stdout).into_owned();
    for option in ["--events", "--products", "--seed", "--refund-rate", "--duplicate-rate", "--format"] {
        let described = help.lines().any(|l| l.trim_start().starts_with(option) && l.trim().len() > option.len() + 12);
        assert!(described || help.contains(&format!("{option} <")), "{option} undescribed:\n{help}");
    }
}

#[test]
fn an_interrupted_replay_says_so_and_a_rerun_completes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "1000000", "--products", "5000", "--start", "2026-11-02", "--seed", "5"]);
    let data = dir.path().join("data");
    let child = topk_cmd()
        .arg("replay")
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let st = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: the lines appended so far are safe; run the same command again"), "{stderr}");
    let out = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_sums_eq(&archive_sums(&data.join("archive")), &ground_truth(&input));
}
