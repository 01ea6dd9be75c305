//! Fleet benchmarks (issue 2): cold spawn-to-terminal, warm reconnect-and-run,
//! event streaming rate, idle worker memory.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bamboo_subagent::fleet::{spawn_worker, WorkerCommand, WorkerHandle};
use bamboo_subagent::frames::{ChildFrame, ParentFrame, RunRequest};
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};

use super::{median, median_f, report, worker_bin};

fn spec(id: &str, fabric: &std::path::Path, reusable: bool) -> ProvisionSpec {
    let mut spec = ProvisionSpec::new(id, ExecutorSpec::Echo, fabric.to_string_lossy());
    spec.identity.role = "bench".into();
    spec.identity.depth = 1;
    spec.reusable = reusable;
    spec
}

/// Runs `assignment` on a fresh connection; returns the number of event frames.
async fn run_once(worker: &WorkerHandle, assignment: &str) -> Result<u64> {
    let mut conn = worker.connect().await?;
    conn.sender
        .send(ParentFrame::Run(RunRequest::new(assignment)))
        .await?;
    let mut events = 0;
    while let Some(frame) = conn.receiver.recv().await {
        match frame? {
            ChildFrame::Event { .. } => events += 1,
            ChildFrame::Terminal(t) if t.status == bamboo_domain::TerminalStatus::Completed => {
                return Ok(events)
            }
            ChildFrame::Terminal(t) => bail!("run ended {}: {:?}", t.status, t.error),
            _ => {}
        }
    }
    bail!("connection closed before the terminal frame")
}

pub async fn run() -> Result<()> {
    let cmd = WorkerCommand::new(worker_bin()?);
    let dir = tempfile::tempdir()?;
    let patience = Duration::from_secs(10);
    println!("== fleet (release build, medians) ==");

    // Warm-up: page the binary in.
    let w = spawn_worker(&cmd, &spec("warmup", dir.path(), false), patience).await?;
    run_once(&w, "hi").await?;

    let mut cold = Vec::new();
    for i in 0..60 {
        let s = spec(&format!("cold-{i}"), dir.path(), false);
        let t = Instant::now();
        let mut w = spawn_worker(&cmd, &s, patience).await?;
        run_once(&w, "hi").await?;
        cold.push(t.elapsed());
        w.kill().await;
    }
    let c = median(cold);
    report(
        "cold: spawn+register+connect+echo+terminal",
        format!("{:.2} ms", ms(c)),
        "<= 5 ms",
        c <= Duration::from_millis(5),
    );

    let mut w = spawn_worker(&cmd, &spec("warm", dir.path(), true), patience).await?;
    run_once(&w, "hi").await?;
    let mut warm = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        run_once(&w, "hi").await?;
        warm.push(t.elapsed());
    }
    let m = median(warm);
    report(
        "warm: reconnect+echo+terminal",
        format!("{:.3} ms", ms(m)),
        "<= 0.5 ms",
        m <= Duration::from_micros(500),
    );

    let (rss, anon, file) = idle_rss_kib(&w).await?;
    let mib = |k: u64| k as f64 / 1024.0;
    report(
        "idle reusable worker resident memory",
        format!("{:.2} MiB", mib(rss)),
        "<= 4 MiB",
        rss <= 4096,
    );
    println!(
        "  (anonymous {:.2} MiB, file-backed {:.2} MiB)",
        mib(anon),
        mib(file)
    );

    let words = 1_000_000usize;
    let assignment = "w ".repeat(words);
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let n = run_once(&w, &assignment).await?;
        let secs = t.elapsed().as_secs_f64();
        if n != words as u64 + 1 {
            bail!("expected {} events, got {n}", words + 1);
        }
        rates.push(n as f64 / secs);
    }
    let r = median_f(rates);
    report(
        "stream: echo events per second",
        format!("{:.0}/s", r),
        ">= 1,000,000/s",
        r >= 1_000_000.0,
    );
    w.kill().await;
    Ok(())
}

/// Resident memory of an idle worker: (total, anonymous, file-backed) KiB.
async fn idle_rss_kib(w: &WorkerHandle) -> Result<(u64, u64, u64)> {
    let pid = w.pid().context("local worker has a pid")?;
    // Let the worker settle after its last run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} not found in /proc/<pid>/status"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
