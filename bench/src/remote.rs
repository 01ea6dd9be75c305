//! Remote benchmarks (issue 10): warm runs over TLS on loopback through the
//! engine to a resident worker (`bamboo-worker serve`), and 100 children
//! across two resident workers. TLS from a CA made here with `rcgen`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bamboo_engine::{CreateChild, Placement, RemoteEndpoint};
use bamboo_subagent::spec::ExecutorSpec;
use bamboo_subagent::Secret;

use super::engine::Bench;
use super::{median, report, worker_bin};

const TOKEN: &str = "bench-resident-token-0123456789abcdef0123456789abcdef";

pub async fn run() -> Result<()> {
    println!("== remote (release build, TLS on loopback, medians) ==");
    let dir = tempfile::tempdir()?;
    let ca = make_pki(dir.path())?;
    let a = Resident::start(dir.path())?;
    let b = Resident::start(dir.path())?;
    warm_runs(&ca, &a).await?;
    hundred(&ca, &a, &b).await
}

/// 1: one warm run at a time through the engine over wss://.
async fn warm_runs(ca: &[u8], a: &Resident) -> Result<()> {
    let bench = Bench::with(ExecutorSpec::Echo, 8, None, |builder| {
        builder
            .remote_worker(a.endpoint.clone(), endpoint(ca, 8))
            .default_placement(a.placement())
    })
    .await?;
    for _ in 0..20 {
        bench.run_one("warm up").await?;
    }
    let mut times = Vec::new();
    for _ in 0..500 {
        times.push(bench.run_one("hello over tls").await?);
    }
    let m = median(times);
    report(
        "remote: warm run over TLS via the engine",
        format!("{:.3} ms", m.as_secs_f64() * 1e3),
        "<= 1 ms",
        m <= Duration::from_millis(1),
    );
    bench.close().await;
    Ok(())
}

/// 2: 100 children across two resident workers (8 connections each).
async fn hundred(ca: &[u8], a: &Resident, b: &Resident) -> Result<()> {
    let mut walls = Vec::new();
    for _ in 0..5 {
        let bench = Bench::with(ExecutorSpec::Echo, 16, None, |builder| {
            builder
                .remote_worker(a.endpoint.clone(), endpoint(ca, 8))
                .remote_worker(b.endpoint.clone(), endpoint(ca, 8))
        })
        .await?;
        let mut events = bench.subscribe();
        let t = Instant::now();
        for i in 0..100 {
            let r = if i % 2 == 0 { a } else { b };
            let mut input = CreateChild::new(&bench.parent, format!("task {i} alpha beta"));
            input.placement = Some(r.placement());
            input.auto_run = true;
            bench.engine.create_child(input).await?;
        }
        super::engine::until_n_completed(&mut events, 100).await?;
        walls.push(t.elapsed());
        bench.close().await;
    }
    let m = median(walls);
    report(
        "remote: 100 children across 2 workers (wall)",
        format!("{:.0} ms", m.as_secs_f64() * 1e3),
        "reported",
        true,
    );
    Ok(())
}

fn endpoint(ca: &[u8], cap: usize) -> RemoteEndpoint {
    let mut e = RemoteEndpoint::new(Secret::new(TOKEN));
    e.ca_certs = vec![ca.to_vec()];
    e.max_connections = cap;
    e
}

/// Writes a CA, a server certificate for 127.0.0.1 and the token file;
/// returns the CA certificate (DER).
fn make_pki(dir: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    let token = dir.join("token");
    std::fs::write(&token, TOKEN)?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    Ok(ca.der().to_vec())
}

/// A `serve` process, killed on drop.
struct Resident {
    child: Child,
    endpoint: String,
}

impl Resident {
    fn start(dir: &Path) -> Result<Self> {
        let path = |name: &str| dir.join(name).display().to_string();
        let mut child = Command::new(worker_bin()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--max-runs", "64"])
            .args(["--token-file", &path("token")])
            .args([
                "--tls-cert",
                &path("cert.pem"),
                "--tls-key",
                &path("key.pem"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start bamboo-worker serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let endpoint = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("serve printed {line:?} instead of its endpoint"))?
            .to_owned();
        Ok(Self { child, endpoint })
    }

    fn placement(&self) -> Placement {
        Placement::Remote {
            endpoint: self.endpoint.clone(),
        }
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
