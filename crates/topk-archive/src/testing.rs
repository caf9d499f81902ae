//! Test support shared by the crates' suites: an S3 endpoint to run against.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Mutex;

use topk_log::testing::{reachable, start_server};

/// Where the test S3 endpoint listens unless `TOPK_TEST_S3` names another.
pub const TEST_S3: &str = "127.0.0.1:5055";
const BUCKET: &str = "topk-test";

fn endpoint() -> String {
    std::env::var("TOPK_TEST_S3").unwrap_or_else(|_| TEST_S3.into())
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
        let mut moto = Command::new("moto_server");
        moto.args(["-H", host, "-p", port]);
        drop(start_server("moto_server", moto, &addr, "pip install 'moto[server]' or set TOPK_TEST_S3"));
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
