//! The HTTP API fuzzed against its own OpenAPI document by schemathesis, for a bounded
//! time: no reply is a server error, every status is a documented one, every body and
//! content type matches what the document says. `POST /api/v1/events` is left out: its
//! body is NDJSON, which schemathesis cannot generate (the `ndjson` fuzz target and the
//! ingest tests cover it). `TOPK_SCHEMATHESIS_SECS` (60) and `TOPK_SCHEMATHESIS_SEED` (7)
//! set the run.

mod common;

use std::process::Command;
use std::time::Duration;

use common::deploy::wait_for;
use common::*;

#[test]
fn schemathesis_finds_no_server_error_and_no_reply_off_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--demo", "--demo-rate", "1000", "--demo-history-days", "2", "--auth-token", "st-token"];
    let s = serve(&dir.path().join("data"), &args);
    wait_for("the demo's first exact day", Duration::from_secs(120), || {
        get_json(&format!("{}/api/v1/buckets?granularity=day", s.url)).1.to_string().contains("\"source\":\"batch\"")
    });
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/api/v1/openapi.json", s.url)])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance"])
        .args(["--checks", "response_schema_conformance"])
        .args(["--exclude-path", "/api/v1/events", "-H", "Authorization: Bearer st-token", "--workers", "2"])
        .args(["--max-time", &env("TOPK_SCHEMATHESIS_SECS", "60"), "--seed", &env("TOPK_SCHEMATHESIS_SEED", "7")])
        .env("NO_COLOR", "1")
        .current_dir(dir.path()) // where it keeps its cache
        .output()
        .expect("the API fuzz test needs schemathesis: pip install schemathesis");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.rsplit("SUMMARY").next().unwrap_or(&text);
    eprintln!("{summary}");
    assert!(out.status.success(), "schemathesis found failures:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    // It really ran: the summary counts what it generated, every operation but ingest.
    let generated = summary
        .lines()
        .find_map(|l| l.trim().strip_suffix(" passed")?.split(" generated").next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(generated >= 200, "only {generated} cases generated:\n{summary}");
    let tested = summary.lines().find_map(|l| l.trim().strip_prefix("Tested: ")?.parse::<u32>().ok());
    assert_eq!(tested, Some(15), "{summary}");
}
