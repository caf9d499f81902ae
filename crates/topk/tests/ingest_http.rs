//! The ingest API over a real socket: every kind of bad input gets a clear, per-line
//! error, the valid lines beside it are kept, and nothing panics.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use topk::config::Settings;
use topk::process::Pipeline;
use topk_serve::AppState;

struct Server {
    url: String,
    pipeline: Arc<Pipeline>,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(data: &std::path::Path, token: Option<&str>, max_body: usize) -> Server {
    let cfg = Settings {
        data_dir: Some(data.to_path_buf()),
        max_body_bytes: Some(max_body),
        auth_token: token.map(String::from),
        ..Settings::default()
    }
    .over_file(None)
    .unwrap();
    let serve = cfg.serve.clone();
    let pipeline = Arc::new(Pipeline::start(cfg).unwrap());
    let state = Arc::new(AppState::new(pipeline.clone(), serve));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(topk_serve::run(listener, state.clone(), async { rx.await.unwrap_or(()) }).map_ok());
    Server { url, pipeline, state, stop: Some(tx), task }
}

trait MapOk {
    fn map_ok(self) -> impl std::future::Future<Output = ()> + Send;
}
impl<F: std::future::Future<Output = std::io::Result<()>> + Send> MapOk for F {
    async fn map_ok(self) {
        self.await.unwrap()
    }
}

impl Server {
    /// Stops the server and drains the pipeline so the archive holds everything accepted.
    async fn finish(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap();
        drop(self.state);
        let pipeline = self.pipeline;
        tokio::task::spawn_blocking(move || {
            pipeline.drain().unwrap();
            pipeline.shutdown().unwrap();
        })
        .await
        .unwrap();
    }
}

fn now_ms() -> i64 {
    topk_core::clock::now_ms()
}

fn valid(id: &str, product: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","ts":{},"product_id":"{product}","quantity":2,"price_cents":150}}"#,
        now_ms() - 60_000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_get_clear_errors_and_valid_neighbours_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, 1 << 20).await;
    let now = now_ms();
    let long = "x".repeat(10 * 1024);
    let mut body = Vec::new();
    let lines: Vec<(String, Option<(&str, &str)>)> = vec![
        (valid("ok-1", "a"), None),
        ("{\"event_id\":".into(), Some(("", "invalid JSON"))),
        (format!(r#"{{"event_id":"m","ts":{now}}}"#), Some(("product_id", "is missing"))),
        (format!(r#"{{"event_id":"e","ts":{now},"product_id":""}}"#), Some(("product_id", "is empty"))),
        (
            format!(r#"{{"event_id":"l","ts":{now},"product_id":"{long}"}}"#),
            Some(("product_id", "is 10240 bytes long")),
        ),
        (
            format!(r#"{{"event_id":"f","ts":{now},"product_id":"a","quantity":2.5}}"#),
            Some(("quantity", "must be an integer")),
        ),
        (format!(r#"{{"event_id":"z","ts":{now},"product_id":"a","quantity":0}}"#), Some(("quantity", "is 0"))),
        (
            format!(r#"{{"event_id":"n","ts":{now},"product_id":"a","quantity":-3}}"#),
            Some(("quantity", "is negative (-3) but kind is not \"refund\"")),
        ),
        (
            r#"{"event_id":"t","ts":"last tuesday","product_id":"a"}"#.into(),
            Some(("ts", "is not an RFC 3339 timestamp")),
        ),
        (
            r#"{"event_id":"o","ts":"1999-12-31T23:59:59Z","product_id":"a"}"#.into(),
            Some(("ts", "is before 2000-01-01")),
        ),
        (
            format!(r#"{{"event_id":"u","ts":{},"product_id":"a"}}"#, now + 2 * 86_400_000),
            Some(("ts", "in the future")),
        ),
        (
            format!(r#"{{"event_id":"x","ts":{now},"product_id":"a","colour":"red"}}"#),
            Some(("colour", "unknown field")),
        ),
        (valid("ok-2", "b"), None),
    ];
    for (line, _) in &lines {
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
    }
    // Invalid UTF-8 on its own line, then one more valid line.
    body.extend_from_slice(b"{\"event_id\":\"\xff\xfe\"}\n");
    body.extend_from_slice(valid("ok-3", "a").as_bytes());

    let resp = reqwest::Client::new().post(format!("{}/api/v1/events", server.url)).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["accepted"], 3, "{reply:#}");
    let rejected = reply["rejected"].as_array().unwrap();
    assert_eq!(reply["rejected_count"], 12);
    assert_eq!(rejected.len(), 12);
    for (i, (_, expect)) in lines.iter().enumerate() {
        let Some((field, reason)) = expect else { continue };
        let line = i as u64 + 1;
        let r = rejected
            .iter()
            .find(|r| r["line"] == line)
            .unwrap_or_else(|| panic!("line {line} not rejected: {reply:#}"));
        assert_eq!(r["field"].as_str().unwrap_or(""), *field, "line {line}: {r}");
        assert!(r["reason"].as_str().unwrap().contains(reason), "line {line}: {r}");
    }
    let utf8 = rejected.iter().find(|r| r["line"] == 14).unwrap();
    assert!(utf8["reason"].as_str().unwrap().starts_with("invalid UTF-8"), "{utf8}");

    server.finish().await;
    let sums = archive_sums(&dir.path().join("archive"));
    let total: i64 = sums.values().map(|(c, _)| c).sum();
    assert_eq!(total, 6, "exactly the three valid lines, quantity 2 each: {sums:?}");
    let revenue: i64 = sums.values().map(|(_, r)| r).sum();
    assert_eq!(revenue, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_oversized_unauthorized_and_all_bad_bodies_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some("s3cret"), 4096).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/events", server.url);
    let post = |body: Vec<u8>| client.post(&url).bearer_auth("s3cret").body(body);

    let r = client.post(&url).body(valid("a", "p")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.post(&url).bearer_auth("wrong").body(valid("a", "p")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = post(Vec::new()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("empty body"));

    let big = format!("{}\n", valid("b", "p")).repeat(100).into_bytes();
    assert!(big.len() > 4096);
    let r = post(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // gzip is accepted, and its decompressed size is limited too.
    let gz = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    let bomb = gz(&big);
    assert!(bomb.len() < 4096);
    let r = post(bomb).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = post(gz(valid("g", "p").as_bytes())).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    let r = post(b"\x1f\x8b garbage".to_vec()).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = post(b"nonsense\n{}\n".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let reply: Value = r.json().await.unwrap();
    assert_eq!((reply["accepted"].as_u64(), reply["rejected_count"].as_u64()), (Some(0), Some(2)));
    assert_eq!(reply["rejected"][1]["field"], "event_id");

    // Replay positions from a client are checked, not trusted.
    let r = post(valid("q", "p").into_bytes()).query(&[("source", "5"), ("line", "0")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client.post(format!("{url}?colour=red")).bearer_auth("s3cret").body(valid("q", "p")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let health = client.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_members_encodings_byte_order_marks_and_bearer_case_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some("s3cret"), 1 << 20).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/events", server.url);
    let post = |body: Vec<u8>| client.post(&url).bearer_auth("s3cret").body(body);
    let gz = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    // Two gzip members (`gzip -c a >> ab.gz`): every line of both is read (the second
    // member's lines were once lost without a word).
    let a = format!("{}\n{}\n", valid("m1", "p"), valid("m2", "p"));
    let b = format!("{}\n{}\n", valid("m3", "p"), valid("m4", "p"));
    let mut two = gz(a.as_bytes());
    two.extend(gz(b.as_bytes()));
    let r = post(two.clone()).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let reply: Value = r.json().await.unwrap();
    assert_eq!((reply["accepted"].as_u64(), reply["rejected_count"].as_u64()), (Some(4), Some(0)), "{reply}");
    // Bytes after the last member are refused, not dropped silently.
    let mut trailing = two;
    trailing.extend_from_slice(b"not gzip");
    let r = post(trailing).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not valid gzip"));
    // An encoding it cannot read is 415, not read as plain text.
    let r = post(a.clone().into_bytes()).header("content-encoding", "br").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("\"br\" is not supported"), "{e}");
    // gzip without the header gets a hint, not "invalid UTF-8 at byte 1".
    let r = post(gz(a.as_bytes())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("looks gzip-compressed"));
    // A byte order mark at the start is skipped.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(format!("{}\n", valid("bom", "p")).into_bytes());
    let r = post(bom).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    // The bearer scheme is case-insensitive.
    let r = client.post(&url).header("authorization", "bearer s3cret").body(valid("lc", "p")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // An unknown parameter is a JSON error like every other.
    let r = post(valid("q", "p").into_bytes()).query(&[("foo", "1")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("unknown field `foo`"), "{e}");
    server.finish().await;
}

/// An ingest request takes one of the few places before its body is read: with every
/// place taken, a 40 MB body is left in the socket (it once was read whole first, so 16
/// concurrent 60 MB requests held 1.7 GB), and is read once a place frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_bodies_are_read_only_once_a_place_is_free() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, 64 << 20).await;
    let all = topk_serve::MAX_CONCURRENT_INGESTS as u32;
    let held = server.state.ingests.clone().acquire_many_owned(all).await.unwrap();
    let line = format!("{}\n", valid("big", "p"));
    let body = line.repeat((40 << 20) / line.len());
    let addr = server.url.trim_start_matches("http://").to_string();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!("POST /api/v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).unwrap();
        s.set_write_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
        let mut sent = 0;
        let mut reported = false;
        while sent < body.len() {
            match s.write(&body.as_bytes()[sent..(sent + (64 << 10)).min(body.len())]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    if !reported {
                        sent_tx.send(sent).unwrap();
                        reported = true;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        if !reported {
            sent_tx.send(sent).unwrap();
        }
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&reply).contains("\"accepted\"") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&reply));
            reply.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&reply).into_owned()
    });
    let stalled_at = tokio::task::spawn_blocking(move || sent_rx.recv().unwrap()).await.unwrap();
    assert!(stalled_at < 16 << 20, "the server read {stalled_at} bytes of a body it had no place for");
    drop(held);
    let reply = tokio::task::spawn_blocking(move || client.join().unwrap()).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(&format!("\"accepted\":{}", (40 << 20) / line.len())), "{}", &reply[..300.min(reply.len())]);
    server.finish().await;
}
