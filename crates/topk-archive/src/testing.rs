//! Test support shared by the crates' suites: an S3 endpoint to run against.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the test S3 endpoint listens unless `TOPK_TEST_S3` names another.
pub const TEST_S3: &str = "127.0.0.1:5055";
const BUCKET: &str = "topk-test";

fn endpoint() -> String {
    std::env::var("TOPK_TEST_S3").unwrap_or_else(|_| TEST_S3.into())
}

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// A bucket on the test S3 endpoint: `moto_server` (Python's moto, an S3 mock speaking
/// the real protocol), started here if nothing listens there yet. It keeps running after
/// the tests, for the next test binary.
pub fn s3_bucket() -> &'static str {
    static STARTING: Mutex<bool> = Mutex::new(false);
    let mut ready = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return BUCKET;
    }
    let addr = endpoint();
    if !reachable(&addr) {
        let (host, port) = addr.split_once(':').expect("host:port");
        let log = std::fs::File::create(std::env::temp_dir().join("topk-test-moto.log")).expect("moto log file");
        // Deliberately not waited for: the endpoint outlives this test process.
        #[allow(clippy::zombie_processes)]
        Command::new("moto_server")
            .args(["-H", host, "-p", port])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("the S3 tests need an endpoint on {addr}: pip install 'moto[server]' or set TOPK_TEST_S3 ({e})")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reachable(&addr) {
            assert!(Instant::now() < deadline, "moto_server did not listen on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Create the bucket (unsigned: the mock accepts it; an existing bucket is fine).
    let mut s = TcpStream::connect(&addr).expect("connecting to the S3 endpoint");
    write!(s, "PUT /{BUCKET} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.contains("BucketAlreadyOwnedByYou"),
        "creating the bucket: {reply}"
    );
    *ready = true;
    BUCKET
}

/// The `object_store` settings for the test endpoint.
pub fn s3_options() -> Vec<(&'static str, &'static str)> {
    let endpoint: &'static str = Box::leak(format!("http://{}", endpoint()).into_boxed_str());
    vec![
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ]
}
