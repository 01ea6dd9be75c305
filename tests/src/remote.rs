//! Helpers of the resident-worker tests: a CA and a server certificate made
//! in the test, a token file, and `bamboo-worker serve` processes on loopback.

// Test setup: a failure here is the calling test's failure, said by the panic.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bamboo_engine::{Engine, EngineBuilder, Placement, RemoteEndpoint, Timeouts};
use bamboo_subagent::spec::ExecutorSpec;
use bamboo_subagent::Secret;

/// The token the test workers require.
pub const TOKEN: &str = "0123456789abcdef-remote-test-token-fedcba9876543210";

/// A CA and a server certificate for `localhost` and 127.0.0.1, as files.
#[derive(Debug)]
pub struct Pki {
    pub ca_der: Vec<u8>,
    pub ca_pem: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bamboo test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let pki = Self {
            ca_der: ca.der().to_vec(),
            ca_pem: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&pki.ca_pem, ca.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }
}

/// Writes `token` to a file only its owner may read.
pub fn token_file(dir: &Path, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("token-{}", token.len()));
    std::fs::write(&path, token).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A `bamboo-worker serve` process, killed on drop.
#[derive(Debug)]
pub struct Resident {
    pub child: Child,
    pub endpoint: String,
}

impl Resident {
    /// Starts `serve` with `args` and waits for its "listening" line.
    pub fn start(args: &[String]) -> Self {
        let mut child = Command::new(crate::worker_bin())
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("no readiness line from serve: {line:?}"))
            .to_owned();
        Self { child, endpoint }
    }

    /// A TLS worker on loopback with the test token and `extra` flags.
    pub fn tls(dir: &Path, pki: &Pki, port: u16, extra: &[&str]) -> Self {
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--token-file".to_owned(),
            token_file(dir, TOKEN).display().to_string(),
            "--tls-cert".to_owned(),
            pki.cert.display().to_string(),
            "--tls-key".to_owned(),
            pki.key.display().to_string(),
            "--keepalive-ms".to_owned(),
            "500".to_owned(),
            "--keepalive-timeout-ms".to_owned(),
            "4000".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(&args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
    }

    /// Waits for the process to exit; its status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The placement of a resident worker.
pub fn remote(r: &Resident) -> Placement {
    Placement::Remote {
        endpoint: r.endpoint.clone(),
    }
}

/// Engine link settings: fast keepalive so a frozen worker shows within 10 s.
pub fn timeouts() -> Timeouts {
    Timeouts {
        cancel_grace: Duration::from_secs(3),
        keepalive_interval: Duration::from_millis(500),
        keepalive_timeout: Duration::from_secs(4),
        ..Timeouts::default()
    }
}

/// An engine that knows `residents` (trusting the test CA, cap `cap` each).
pub fn engine_builder(
    dir: &Path,
    max_running: usize,
    pki: &Pki,
    residents: &[&Resident],
    cap: usize,
) -> EngineBuilder {
    let mut b = Engine::builder()
        .data_dir(dir)
        .worker_program(crate::worker_bin())
        .executor(ExecutorSpec::Echo)
        .max_running(max_running)
        .timeouts(timeouts());
    for r in residents {
        let mut e = RemoteEndpoint::new(Secret::new(TOKEN));
        e.ca_certs = vec![pki.ca_der.clone()];
        e.max_connections = cap;
        b = b.remote_worker(r.endpoint.clone(), e);
    }
    b
}
