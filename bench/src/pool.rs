//! Pool benchmarks (issue 12) through a real `nats-server -js` on loopback:
//! per-run overhead of a warm pool run, events per second for one run, and
//! 1,000 children across 4 `bamboo-worker join` processes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_engine::{CreateChild, Engine};
use bamboo_pool::worker::{join, ExecutorFactory, JoinOptions};
use bamboo_pool::{ClientSettings, NatsOptions, PoolClient, PoolName, PoolSettings};
use bamboo_subagent::executor::echo::EchoExecutor;
use bamboo_subagent::executor::{Executor, RunContext, RunOutcome, RunRequest};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::{ExecutorSpec, Placement, ProvisionSpec};
use tokio_util::sync::CancellationToken;

use super::{median, report, worker_bin};

/// A `nats-server -js` on a free loopback port with a temp store; killed on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bin = std::env::var_os("BAMBOO_NATS_SERVER").unwrap_or_else(|| "nats-server".into());
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nats-server: install it (apt-get install nats-server)")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("nats-server did not listen within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Emits as many `token` events as the assignment's number says.
struct Flood;

#[async_trait]
impl Executor for Flood {
    async fn run(&self, request: RunRequest, ctx: RunContext) -> RunOutcome {
        let n: usize = request.assignment.trim().parse().unwrap_or(0);
        for _ in 0..n {
            let ev = AgentEvent::Token {
                content: "x".into(),
            };
            if ctx.events.emit(ev).await.is_err() {
                return RunOutcome::cancelled();
            }
        }
        RunOutcome::completed(n.to_string())
    }
}

/// An in-process pool worker serving `executor`.
fn worker(url: &str, pool: &str, executor: Arc<dyn Executor>, stop: CancellationToken) {
    let factory: ExecutorFactory = Arc::new(move |_: &ProvisionSpec| Ok(executor.clone()));
    let opts = JoinOptions {
        nats: NatsOptions::new(url),
        pool: PoolName::new(pool).unwrap_or_else(|_| unreachable!()),
        max_runs: 4,
        settings: PoolSettings::default(),
        worker_id: None,
        drain: Duration::from_secs(1),
        version: "bench".into(),
    };
    tokio::spawn(async move {
        if let Err(e) = join(opts, factory, stop, |_| {}).await {
            eprintln!("bench pool worker: {e}");
        }
    });
}

/// One run through the pool to its terminal; returns the events seen.
async fn one_run(c: &PoolClient, pool: &PoolName, assignment: &str) -> Result<usize> {
    let spec = ProvisionSpec::new("bench", ExecutorSpec::Echo, "/unused");
    let (tx, mut rx) = c.prepare(pool, &spec).await?;
    tx.send(ParentFrame::Run(RunRequest::new(assignment)))
        .await?;
    let mut events = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Ok(ChildFrame::Event { .. }))) => events += 1,
            Ok(Some(Ok(ChildFrame::Terminal(_)))) => return Ok(events),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => bail!("pool run failed: {e}"),
            Ok(None) => bail!("pool run ended without a terminal"),
            Err(_) => bail!("pool run took over 60 s"),
        }
    }
}

/// Runs the pool group.
pub async fn run() -> Result<()> {
    let server = Server::start()?;
    let url = server.url();
    let stop = CancellationToken::new();
    worker(&url, "bench-echo", Arc::new(EchoExecutor), stop.clone());
    worker(&url, "bench-flood", Arc::new(Flood), stop.clone());
    let c = PoolClient::connect(&NatsOptions::new(&url), ClientSettings::default()).await?;
    overhead(&c).await?;
    throughput(&c).await?;
    stop.cancel();
    fleet(&url).await?;
    Ok(())
}

async fn overhead(c: &PoolClient) -> Result<()> {
    let pool = PoolName::new("bench-echo")?;
    for _ in 0..50 {
        one_run(c, &pool, "warm").await?;
    }
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        one_run(c, &pool, "hi").await?;
        times.push(t.elapsed());
    }
    let m = median(times);
    report(
        "pool: per-run overhead via NATS (median)",
        format!("{:.3} ms", m.as_secs_f64() * 1e3),
        "<= 2 ms",
        m <= Duration::from_millis(2),
    );
    Ok(())
}

async fn throughput(c: &PoolClient) -> Result<()> {
    let pool = PoolName::new("bench-flood")?;
    one_run(c, &pool, "1000").await?;
    let n = 500_000;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let got = one_run(c, &pool, &n.to_string()).await?;
        if got != n {
            bail!("expected {n} events, got {got}");
        }
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let r = super::median_f(rates);
    report(
        "pool: events through NATS, one run",
        format!("{:.0}/s", r),
        ">= 500000/s",
        r >= 500_000.0,
    );
    Ok(())
}

/// 1,000 children through an engine across 4 `bamboo-worker join` processes.
async fn fleet(url: &str) -> Result<()> {
    let bin = worker_bin()?;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut child = Command::new(&bin)
            .args([
                "join",
                "--nats",
                url,
                "--pool",
                "bench-fleet",
                "--max-runs",
                "16",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start bamboo-worker join")?;
        let out = child.stdout.take().context("worker stdout")?;
        let line = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(out).read_line(&mut line);
            line
        })
        .await?;
        if !line.starts_with("joined pool") {
            bail!("a pool worker did not join: {line:?}");
        }
        workers.push(child);
    }
    let dir = tempfile::tempdir()?;
    let client = PoolClient::connect(&NatsOptions::new(url), ClientSettings::default()).await?;
    let engine = Engine::builder()
        .data_dir(dir.path())
        .executor(ExecutorSpec::Echo)
        .max_running(1000)
        .default_placement(Placement::Schedulable {
            pool: "bench-fleet".into(),
        })
        .nats_pool(client)
        .build()
        .await?;
    let root = engine.create_root("bench", None).await?.id;
    let t = Instant::now();
    let mut tickets = Vec::new();
    for i in 0..1000 {
        let child = engine
            .create_child(CreateChild::new(&root, format!("child {i}")))
            .await?;
        tickets.push(engine.run_child(&root, &child.id, true).await?);
    }
    let mut completed = 0;
    for ticket in tickets {
        if ticket
            .await
            .map(|r| r.status == CompletionStatus::Completed)
            .unwrap_or(false)
        {
            completed += 1;
        }
    }
    let wall = t.elapsed();
    engine.shutdown().await;
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    report(
        "pool: 1,000 children on 4 workers (wall)",
        format!("{:.2} s", wall.as_secs_f64()),
        "reported",
        completed == 1000,
    );
    Ok(())
}
