//! Test support shared by the crates' suites: a Kafka broker to run against.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the test broker listens unless `TOPK_TEST_KAFKA` names another.
pub const TEST_BROKER: &str = "127.0.0.1:9092";

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

fn tansu() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tansu"))
        .chain(home)
        .find(|p| p.is_file())
}

/// The brokers of the test Kafka: `TOPK_TEST_KAFKA`, or a `tansu` broker (a
/// Kafka-compatible broker, in memory) on [`TEST_BROKER`], started here if nothing
/// listens there yet. It keeps running after the tests, for the next test binary.
pub fn kafka_brokers() -> String {
    if let Ok(b) = std::env::var("TOPK_TEST_KAFKA") {
        return b;
    }
    static STARTING: Mutex<()> = Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if reachable(TEST_BROKER) {
        return TEST_BROKER.into();
    }
    let bin = tansu().unwrap_or_else(|| {
        panic!(
            "the Kafka tests need a broker on {TEST_BROKER}: install tansu \
             (cargo install tansu --version 0.6.0 --features dynostore --locked) or set TOPK_TEST_KAFKA"
        )
    });
    let url = format!("tcp://{TEST_BROKER}");
    let log = std::env::temp_dir().join("topk-test-tansu.log");
    let out = std::fs::File::create(&log).expect("creating the tansu log file");
    // Deliberately not waited for: the broker outlives this test process.
    #[allow(clippy::zombie_processes)]
    Command::new(&bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reachable(TEST_BROKER) {
        assert!(Instant::now() < deadline, "tansu did not listen on {TEST_BROKER} within 30 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    TEST_BROKER.into()
}
