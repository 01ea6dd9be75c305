//! A real `nats-server -js` for the pool tests: its own temp store directory
//! and a free loopback port, killed on drop. Restartable on the same port
//! and store (the server-restart test). Also: pool workers as real
//! `bamboo-worker join` processes.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `nats-server` is: `BAMBOO_NATS_SERVER`, else on PATH or in
/// /usr/sbin (the Debian package). Panics with how to install it.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BAMBOO_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("nats-server not found: `cargo xtask ci` installs it as root; else run `sudo apt-get install -y nats-server` or set BAMBOO_NATS_SERVER")
        })
}

/// A running `nats-server` with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with no authentication.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a server with extra configuration text (authorization, TLS)
    /// written to a config file in its store directory.
    pub fn start_with(config: Option<&str>) -> Self {
        let store = tempfile::tempdir().expect("temp dir for the NATS store");
        let config = config.map(|text| {
            let p = store.path().join("nats.conf");
            std::fs::write(&p, text).expect("write nats.conf");
            p
        });
        let port = free_port();
        let mut s = Self {
            child: None,
            port,
            store,
            config,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-sd",
        ])
        .arg(self.store.path().join("js"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd.spawn().expect("start nats-server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nats-server did not listen on port {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's store directory (for config files next to it).
    pub fn dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port never handed out before in this process: a server
/// killed and restarted on its port (the restart tests) must not find it
/// taken by another test's server that got it while it was down, nor leave
/// that test talking to the wrong server.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A `bamboo-worker join` process, killed on drop.
#[derive(Debug)]
pub struct PoolWorker {
    /// The process.
    pub child: Child,
    /// Its id in the pool.
    pub id: String,
}

impl PoolWorker {
    /// Starts `bamboo-worker join --nats URL --pool POOL --max-runs N EXTRA...`
    /// and waits for its `joined pool` line.
    pub fn join(url: &str, pool: &str, max_runs: usize, extra: &[&str]) -> Self {
        let mut child = Command::new(crate::worker_bin())
            .args(["join", "--nats", url, "--pool", pool, "--max-runs"])
            .arg(max_runs.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bamboo-worker join");
        let stdout = child.stdout.take().expect("stdout");
        // Read on a thread: a worker that never joins fails the test instead
        // of blocking it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the worker never blocks on a full pipe.
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the pool worker did not join within 60 s"));
        let id = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|_| line.starts_with("joined pool"))
            .unwrap_or_else(|| panic!("the pool worker did not join (said {line:?})"))
            .to_owned();
        Self { child, id }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PoolWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
