//! End to end: a replay of a million generated events leaves an archive whose
//! per-(product, hour) sums equal a ground truth computed independently from the file.

mod common;

use common::*;

#[test]
fn replay_of_a_million_events_archives_exact_hourly_sums() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "1000000", "--products", "50000", "--start", "2026-11-01", "--days", "3", "--seed", "7"]);
    let data = dir.path().join("data");
    let out = topk_cmd()
        .args(["replay", "--max-entries", "100000"])
        .arg(&input)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("0 rejected"), "{stdout}");
    let truth = ground_truth(&input);
    assert!(truth.len() > 100_000, "the input should spread over many (product, hour) pairs");
    assert_sums_eq(&archive_sums(&data.join("archive")), &truth);

    // Every hour of the input is complete after the replay, and none is dirty.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("archive/_state.json")).unwrap()).unwrap();
    let hours = state["hours"].as_object().unwrap();
    assert_eq!(hours.len(), 72);
    assert!(hours.values().all(|h| h["complete"] == true && h["dirty"] == false), "{hours:?}");

    // The catalog holds every product of the input, with its name, once the replay returns.
    let catalog = catalog_truth(&input);
    assert!(catalog.values().filter(|(name, _)| name.is_some()).count() > 10_000);
    assert_catalog_eq(&data.join("store.db"), &catalog);

    // Replaying the same file again is a no-op: nothing is counted twice.
    let again = topk_cmd().arg("replay").arg(&input).arg("--data-dir").arg(&data).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already replayed completely"));
    assert_sums_eq(&archive_sums(&data.join("archive")), &truth);
}

#[test]
fn csv_replay_equals_ndjson_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (ndjson, csv) = (dir.path().join("e.ndjson"), dir.path().join("e.csv"));
    let args = ["--events", "50000", "--products", "2000", "--start", "2026-11-01", "--days", "1", "--seed", "3"];
    gen(&ndjson, &args);
    gen(&csv, &[&args[..], &["--format", "csv"]].concat());
    for (file, name) in [(&ndjson, "n"), (&csv, "c")] {
        let data = dir.path().join(name);
        let st = topk_cmd().arg("replay").arg(file).arg("--data-dir").arg(&data).output().unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    }
    let truth = ground_truth(&ndjson);
    assert_sums_eq(&archive_sums(&dir.path().join("n/archive")), &truth);
    assert_sums_eq(&archive_sums(&dir.path().join("c/archive")), &truth);
}
