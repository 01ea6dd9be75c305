//! Engine benchmarks: 100 echo children at a concurrency limit of 8, event
//! forwarding from a child to its parent's subscriber, and per-run overhead on
//! a warm pool. Real worker processes (`BAMBOO_WORKER_BIN`), fresh temp data
//! directory per engine.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bamboo_domain::{AgentEvent, CompletionStatus, ModelRef};
use bamboo_engine::{CreateChild, Engine, EngineBuilder};
use bamboo_subagent::spec::ExecutorSpec;
use tempfile::TempDir;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{median, median_f, report, worker_bin};

/// Subscriber buffer for the streaming benches, set with the builder's
/// `event_capacity` (default 4096): at least one whole 500k-event run, so a
/// subscriber descheduled on a busy 2-core machine loses nothing. Only
/// subscribed streams (here the parent's) allocate it.
pub const STREAM_CAPACITY: usize = 1 << 19;

/// An engine on a fresh data directory with one root session.
pub struct Bench {
    pub engine: Engine,
    pub parent: String,
    // Dropped last: the engine's files live here.
    _dir: TempDir,
}

impl Bench {
    /// Builds an engine running `executor` workers, `max_running` at once.
    pub async fn new(executor: ExecutorSpec, max_running: usize) -> Result<Self> {
        Self::with(executor, max_running, None, |b| b).await
    }

    /// Like [`Bench::new`], with a root model and extra builder settings.
    pub async fn with(
        executor: ExecutorSpec,
        max_running: usize,
        model: Option<ModelRef>,
        configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let builder = Engine::builder(dir.path())
            .worker_program(worker_bin()?)
            .executor(executor)
            .max_running(max_running)
            .event_capacity(STREAM_CAPACITY);
        let engine = configure(builder).build().await?;
        let parent = engine.create_root("bench", model).await?.id;
        Ok(Self {
            engine,
            parent,
            _dir: dir,
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.engine.subscribe(&self.parent)
    }

    /// Creates a child with `assignment` and queues its run; returns its id.
    pub async fn spawn(&self, assignment: &str) -> Result<String> {
        let mut input = CreateChild::new(&self.parent, assignment);
        input.auto_run = true;
        Ok(self.engine.create_child(input).await?.id)
    }

    /// One child run from create to its completion event.
    pub async fn run_one(&self, assignment: &str) -> Result<Duration> {
        let mut events = self.subscribe();
        let t = Instant::now();
        let id = self.spawn(assignment).await?;
        until_completed(&mut events, &id).await?;
        Ok(t.elapsed())
    }

    /// Like [`Bench::run_one`], but as two calls: `create_child` without
    /// `auto_run`, then `run_child`, so the run always takes the queued path
    /// (a durable `pending`, then a durable `running`).
    pub async fn run_one_queued(&self, assignment: &str) -> Result<Duration> {
        let mut events = self.subscribe();
        let t = Instant::now();
        let input = CreateChild::new(&self.parent, assignment);
        let id = self.engine.create_child(input).await?.id;
        self.engine.run_child(&self.parent, &id, true).await?;
        until_completed(&mut events, &id).await?;
        Ok(t.elapsed())
    }

    pub async fn close(self) {
        self.engine.shutdown().await;
    }
}

/// What a parent subscriber saw of one child run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub events: u64,
    pub lagged: u64,
}

/// Reads the parent stream until `child` completes; counts its forwarded
/// events and any events the subscriber lost. Errors unless it completed.
pub async fn until_completed(
    rx: &mut broadcast::Receiver<AgentEvent>,
    child: &str,
) -> Result<Seen> {
    let mut seen = Seen::default();
    loop {
        match rx.recv().await {
            Ok(AgentEvent::SubAgentEvent {
                child_session_id, ..
            }) if child_session_id == child => seen.events += 1,
            Ok(AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                error,
                ..
            }) if child_session_id == child => {
                if status != CompletionStatus::Completed {
                    bail!("child {child} ended {status:?}: {error:?}");
                }
                return Ok(seen);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => seen.lagged += n,
            Err(RecvError::Closed) => bail!("parent stream closed before {child} completed"),
        }
    }
}

/// Streams one child's events to the parent subscriber; events per second from
/// create to completion.
pub async fn stream_rate(b: &Bench, assignment: &str, expect: u64) -> Result<(f64, u64)> {
    let mut events = b.subscribe();
    let t = Instant::now();
    let id = b.spawn(assignment).await?;
    let seen = until_completed(&mut events, &id).await?;
    let secs = t.elapsed().as_secs_f64();
    if seen.events + seen.lagged < expect {
        bail!("expected at least {expect} events, saw {}", seen.events);
    }
    Ok((seen.events as f64 / secs, seen.lagged))
}

pub async fn run() -> Result<()> {
    println!("== engine (release build, medians) ==");
    fan_out().await?;
    forwarding().await?;
    overhead().await
}

/// 1: 100 echo children at a limit of 8, first create to the 100th completion.
async fn fan_out() -> Result<()> {
    let mut walls = Vec::new();
    let mut max_workers = 0;
    for _ in 0..5 {
        let b = Bench::new(ExecutorSpec::Echo, 8).await?;
        let (wall, workers) = hundred_children(&b).await?;
        walls.push(wall);
        max_workers = max_workers.max(workers);
        b.close().await;
    }
    let m = median(walls);
    report(
        "engine: 100 echo children, limit 8 (wall)",
        format!("{:.0} ms", ms(m)),
        "<= 1000 ms",
        m <= Duration::from_secs(1),
    );
    report(
        "engine: 100 children, workers started (max)",
        max_workers.to_string(),
        "<= 8",
        max_workers <= 8,
    );
    Ok(())
}

async fn hundred_children(b: &Bench) -> Result<(Duration, usize)> {
    const N: usize = 100;
    let mut events = b.subscribe();
    // Counted on its own task so completions are read while creates go on.
    let counter = tokio::spawn(async move {
        let mut done = 0;
        while done < N {
            match events.recv().await {
                Ok(AgentEvent::SubAgentCompleted { status, error, .. }) => {
                    if status != CompletionStatus::Completed {
                        bail!("a child ended {status:?}: {error:?}");
                    }
                    done += 1;
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => bail!("parent stream closed after {done} completions"),
            }
        }
        Ok(Instant::now())
    });
    let t = Instant::now();
    // The parent fans out all at once, as an agent issuing 100 spawn calls.
    let creates = (0..N).map(|i| b.spawn_owned(format!("task {i} alpha beta gamma")));
    for r in futures::future::join_all(creates).await {
        r?;
    }
    let end = tokio::time::timeout(Duration::from_secs(60), counter)
        .await
        .context("100 children did not complete within 60 s")???;
    Ok((end - t, b.engine.stats().workers_started))
}

impl Bench {
    async fn spawn_owned(&self, assignment: String) -> Result<String> {
        self.spawn(&assignment).await
    }
}

/// 2: one child's echo words forwarded to the parent subscriber.
async fn forwarding() -> Result<()> {
    const WORDS: u64 = 500_000;
    let b = Bench::new(ExecutorSpec::Echo, 8).await?;
    b.run_one("warm up").await?;
    let assignment = "w ".repeat(WORDS as usize);
    let (mut rates, mut lagged) = (Vec::new(), 0);
    for _ in 0..5 {
        let (rate, lost) = stream_rate(&b, &assignment, WORDS).await?;
        rates.push(rate);
        lagged += lost;
    }
    b.close().await;
    let r = median_f(rates);
    report(
        "engine: child->parent events/s (500k echo)",
        format!("{r:.0}/s"),
        ">= 500,000/s",
        r >= 500_000.0,
    );
    report(
        "engine: events lagged (capacity 2^19)",
        lagged.to_string(),
        "0",
        lagged == 0,
    );
    Ok(())
}

/// 3: sequential create + run + completion on a warm pool.
async fn overhead() -> Result<()> {
    let b = Bench::new(ExecutorSpec::Echo, 8).await?;
    let times = sequential_runs(&b, 20, 200).await?;
    let mut queued = Vec::with_capacity(200);
    for _ in 0..200 {
        queued.push(b.run_one_queued("hi").await?);
    }
    let workers = b.engine.stats().workers_started;
    b.close().await;
    let m = median(times);
    report(
        "engine: create+run+completion, warm pool",
        format!("{:.3} ms", ms(m)),
        "<= 2 ms",
        m <= Duration::from_millis(2),
    );
    // For information: the same through create, then run_child.
    println!(
        "  (create, then run_child: {:.3} ms; one more durable write)",
        ms(median(queued))
    );
    if workers != 1 {
        println!("  note: {workers} workers started for sequential runs (expected 1)");
    }
    Ok(())
}

/// `warm` unmeasured runs, then `n` measured ones, one child each.
pub async fn sequential_runs(b: &Bench, warm: usize, n: usize) -> Result<Vec<Duration>> {
    for _ in 0..warm {
        b.run_one("hi").await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(b.run_one("hi").await?);
    }
    Ok(times)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
