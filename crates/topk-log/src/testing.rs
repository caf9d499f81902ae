//! Test support shared by the crates' suites: a Kafka broker to run against, and the
//! way every test server is started.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the test broker listens unless `TOPK_TEST_KAFKA` names another.
pub const TEST_BROKER: &str = "127.0.0.1:9092";

/// Whether something accepts connections at `addr` (`host:port`).
pub fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// Starts a test server (`what`, from `command`) in the background, its output in
/// `<tmp>/topk-test-<what>.log`, and waits up to 30 s for it to listen on `addr`. The
/// server is deliberately not waited for: it outlives the test process, for the next
/// test binary. `hint` says how to install it.
pub fn start_server(what: &str, mut command: Command, addr: &str, hint: &str) {
    let log = std::env::temp_dir().join(format!("topk-test-{what}.log"));
    let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
    #[allow(clippy::zombie_processes)]
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("the tests need {what} on {addr}: {hint} ({e})"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reachable(addr) {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within 30 s; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let hint =
        "install tansu (cargo install tansu --version 0.6.0 --features dynostore --locked) or set TOPK_TEST_KAFKA";
    let bin = tansu().unwrap_or_else(|| panic!("the Kafka tests need a broker on {TEST_BROKER}: {hint}"));
    let url = format!("tcp://{TEST_BROKER}");
    let mut tansu = Command::new(&bin);
    tansu
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"]);
    start_server("tansu", tansu, TEST_BROKER, hint);
    TEST_BROKER.into()
}
