//! Test support shared by the crates' suites: a Kafka broker to run against, and the
//! way every test server is started.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the test broker listens unless `TOPK_TEST_KAFKA` names another.
pub const TEST_BROKER: &str = "127.0.0.1:9092";

/// Whether something accepts connections at `addr` (`host:port`).
pub fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// Starts a test server (`what`, from `command`) in the background, its output appended
/// to `<tmp>/topk-test-<what>.log`, and waits up to 30 s for it to listen on `addr`. A
/// server whose child is dropped outlives the test process, for the next test binary.
/// `hint` says how to install it.
pub fn start_server(what: &str, mut command: Command, addr: &str, hint: &str) -> Child {
    let log = std::env::temp_dir().join(format!("topk-test-{what}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
    let child = command
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
    child
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

const TANSU_HINT: &str =
    "install tansu (cargo install tansu --version 0.6.0 --features dynostore,libsql --locked) or set TOPK_TEST_KAFKA";

/// The arguments of a `tansu` broker listening on `addr` and storing in `storage` (a tansu
/// URL), after its program: the program is [`tansu_bin`].
pub fn tansu_args(addr: &str, storage: &str) -> Vec<String> {
    let url = format!("tcp://{addr}");
    ["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", storage]
        .map(str::to_string)
        .to_vec()
}

/// The `tansu` program (panics, saying how to install it, where there is none).
pub fn tansu_bin() -> PathBuf {
    tansu().unwrap_or_else(|| panic!("the Kafka tests need a broker: {TANSU_HINT}"))
}

/// A `tansu` broker listening on `addr`, storing in `storage` (a tansu URL), started in
/// `dir` (where a relative `sqlite://` store lives).
fn start_tansu(addr: &str, storage: &str, dir: &Path) -> Child {
    let mut tansu = Command::new(tansu_bin());
    tansu.current_dir(dir).args(tansu_args(addr, storage));
    start_server("tansu", tansu, addr, TANSU_HINT)
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
    if !reachable(TEST_BROKER) {
        drop(start_tansu(TEST_BROKER, "memory://tansu/", &std::env::temp_dir()));
    }
    TEST_BROKER.into()
}

/// A broker of one test's own that keeps what it holds on disk (`tansu` on SQLite, in a
/// directory of its own), so that it can be killed and started again mid-test. Killed
/// when dropped.
pub struct DurableBroker {
    pub addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl DurableBroker {
    /// Starts on a free loopback port.
    pub fn start() -> DurableBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = std::env::temp_dir().join(format!("topk-test-broker-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut broker = DurableBroker { addr: format!("127.0.0.1:{port}"), dir, child: None };
        broker.restart();
        broker
    }

    /// Kills the broker (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on its port and store (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(start_tansu(&self.addr, "sqlite://tansu.db", &self.dir));
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small tmpfs of the test's own, to fill up: `mount -t tmpfs` (the tests run as root
/// here, as for the network namespaces of the fault tests), unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(bytes: u64) -> Tmpfs {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("topk-tmpfs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("the mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(st.success(), "mounting a tmpfs at {} failed: the disk-full tests need root", path.display());
        Tmpfs { path }
    }

    /// Fills the file system, with a file of its own, up to the last `leave` bytes or
    /// so; returns the file to delete to free the space. Writes until the disk is full
    /// and then gives `leave` back, rather than asking `df` as it goes: every process
    /// spawned while a test drops a log briefly holds a copy of the log's lock.
    pub fn fill(&self, leave: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("the filler file");
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let written = f.metadata().expect("the filler's size").len();
        f.set_len(written.saturating_sub(leave)).expect("giving space back");
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
