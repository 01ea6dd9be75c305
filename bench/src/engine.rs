//! Engine benchmarks: 100 echo children at a concurrency limit of 8, event
//! forwarding from a child to its parent's subscriber, and per-run overhead on
//! a warm pool. Real worker processes (`BAMBOO_WORKER_BIN`), fresh temp data
//! directory per engine.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bamboo_domain::{AgentEvent, CompletionStatus, ModelRef};
use bamboo_engine::{CreateChild, Engine, EngineBuilder, EventStream, Since};
use bamboo_subagent::spec::ExecutorSpec;
use futures::StreamExt;
use tempfile::TempDir;

use super::{median, median_f, report, worker_bin};

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
        let builder = Engine::builder()
            .data_dir(dir.path())
            .worker_program(worker_bin()?)
            .executor(executor)
            .max_running(max_running);
        let engine = configure(builder).build().await?;
        let parent = engine.create_root("bench", model).await?.id;
        Ok(Self {
            engine,
            parent,
            _dir: dir,
        })
    }

    /// The root's events from now on (lossless).
    pub fn subscribe(&self) -> EventStream {
        self.engine.events(&self.parent, Since::Now)
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
    /// Events the log reported lost (`events_truncated`): 0 unless a cap hit.
    pub lagged: u64,
}

/// Checks that `seq` follows the last sequence number seen (nothing lost,
/// nothing duplicated) and records it.
fn follows(last: &mut Option<u64>, seq: u64) -> Result<()> {
    if let Some(prev) = *last {
        if seq != prev + 1 {
            bail!("sequence jumped from {prev} to {seq} (lost or duplicated)");
        }
    }
    *last = Some(seq);
    Ok(())
}

/// Reads the parent stream until `child` completes; counts its forwarded
/// events. Errors unless it completed, and on any gap or duplicate in the
/// sequence numbers.
pub async fn until_completed(rx: &mut EventStream, child: &str) -> Result<Seen> {
    let mut seen = Seen::default();
    let mut last_seq = None;
    loop {
        let Some(logged) = rx.next().await else {
            bail!("parent stream ended before {child} completed");
        };
        follows(&mut last_seq, logged.seq)?;
        match &*logged.event {
            AgentEvent::SubAgentEvent {
                child_session_id, ..
            } if **child_session_id == *child => seen.events += 1,
            AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                error,
                ..
            } if child_session_id == child => {
                if *status != CompletionStatus::Completed {
                    bail!("child {child} ended {status:?}: {error:?}");
                }
                return Ok(seen);
            }
            AgentEvent::EventsTruncated {
                first_seq,
                last_seq,
                ..
            } => seen.lagged += *last_seq + 1 - *first_seq,
            _ => {}
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
    super::eventlog::run().await?;
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

/// Reads the parent stream until `n` children completed; errors on any
/// other ending.
pub async fn until_n_completed(events: &mut EventStream, n: usize) -> Result<()> {
    let mut done = 0;
    while done < n {
        match events.next().await.as_ref().map(|l| &*l.event) {
            Some(AgentEvent::SubAgentCompleted { status, error, .. }) => {
                if *status != CompletionStatus::Completed {
                    bail!("a child ended {status:?}: {error:?}");
                }
                done += 1;
            }
            Some(_) => {}
            None => bail!("parent stream closed after {done} completions"),
        }
    }
    Ok(())
}

async fn hundred_children(b: &Bench) -> Result<(Duration, usize)> {
    const N: usize = 100;
    let mut events = b.subscribe();
    // Counted on its own task so completions are read while creates go on.
    let counter = tokio::spawn(async move {
        until_n_completed(&mut events, N).await?;
        Ok::<_, anyhow::Error>(Instant::now())
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

/// 2: lossless forwarding. One child streams 1,000,000 events; a live
/// subscriber reads them as they come, and in half of the runs a slow one
/// also reads them, pausing 1 s every 100,000 events (so it falls behind
/// the in-memory ring and continues from the log file). Both must get every
/// event in order; the child must not be slowed by the slow one; the
/// engine's memory must not grow with the backlog.
///
/// The runs come in pairs, one without and one with the slow subscriber,
/// in alternating order (so a change in the machine's load hits both
/// alike); the slowdown is the median of the pairs' ratios. Eleven pairs:
/// on a 2-core machine with noisy neighbours one pair's ratio can be off
/// by ±15%, and seven left the median at the mercy of two or three of them.
async fn forwarding() -> Result<()> {
    const EVENTS: u64 = 1_000_000;
    const PAIRS: usize = 11;
    let b = Bench::new(ExecutorSpec::Echo, 8).await?;
    b.run_one("warm up").await?;
    let assignment = "w ".repeat(EVENTS as usize);
    let (mut live_rates, mut alone, mut with_slow, mut ratios, mut growth) =
        (vec![], vec![], vec![], vec![], vec![]);
    for pair in 0..PAIRS {
        let slow_first = pair % 2 == 1;
        let mut runs = [None, None];
        for slow in [slow_first, !slow_first] {
            let r = one_stream(&b, &assignment, EVENTS, slow).await?;
            live_rates.push(r.live_rate);
            if slow {
                growth.push(r.rss_growth_mib);
            }
            runs[usize::from(slow)] = Some(r.child_run);
        }
        if let [Some(a), Some(w)] = runs {
            alone.push(a);
            with_slow.push(w);
            ratios.push(w.as_secs_f64() / a.as_secs_f64());
        }
    }
    b.close().await;
    let rate = median_f(live_rates);
    report(
        "engine: child->live subscriber events/s (1M echo, 0 lost, 0 dup)",
        format!("{rate:.0}/s"),
        ">= 1,000,000/s",
        rate >= 1_000_000.0,
    );
    let (a, w) = (median(alone), median(with_slow));
    let slower = (median_f(ratios) - 1.0) * 100.0;
    report(
        "engine: child run time with a slow subscriber vs live only",
        format!("{:.0} ms vs {:.0} ms ({slower:+.1}%)", ms(w), ms(a)),
        "within 10%",
        slower <= 10.0,
    );
    let g = median_f(growth);
    report(
        "engine: RSS growth while the slow subscriber lags",
        format!("{g:.1} MiB"),
        "<= 64 MiB",
        g <= 64.0,
    );
    Ok(())
}

/// What one streaming run measured.
struct StreamRun {
    /// Events per second seen by the live subscriber, create to completion.
    live_rate: f64,
    /// The child's run time, `sub_agent_started` to `sub_agent_completed`
    /// as logged by the engine.
    child_run: Duration,
    /// Peak engine RSS during the run minus RSS before it.
    rss_growth_mib: f64,
}

async fn one_stream(b: &Bench, assignment: &str, expect: u64, slow: bool) -> Result<StreamRun> {
    settle().await?;
    let before = rss_mib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = tokio::spawn(sample_rss(peak.clone()));
    // A root per run: each session's log has its own size cap (1 GiB by
    // default), and six million-event runs would pass it.
    let root = b.engine.create_root("stream", None).await?.id;
    let live = b.engine.events(&root, Since::Start);
    let slow_reader = slow.then(|| b.engine.events(&root, Since::Start));
    let t = Instant::now();
    let mut input = CreateChild::new(&root, assignment);
    input.auto_run = true;
    let id = b.engine.create_child(input).await?.id;
    let live = tokio::spawn(read_all(live, id.clone(), expect, None));
    let slow_task =
        slow_reader.map(|s| tokio::spawn(read_all(s, id.clone(), expect, Some(100_000))));
    let (count, times) = live.await??;
    let live_rate = count as f64 / t.elapsed().as_secs_f64();
    if let Some(task) = slow_task {
        let (n, _) = task.await??;
        // Every token, plus the `complete` event at the end.
        if n < expect {
            bail!("the slow subscriber got {n} of {expect} events");
        }
    }
    sampler.abort();
    let peak = f64::from_bits(peak.load(std::sync::atomic::Ordering::Relaxed));
    Ok(StreamRun {
        live_rate,
        child_run: times.1 - times.0,
        rss_growth_mib: (peak - before).max(0.0),
    })
}

/// Writes every dirty page to disk first, so a run does not pay for the
/// writeback of the previous run's 200 MB log (whichever kind that run was:
/// without this, the order of the runs biases their comparison).
async fn settle() -> Result<()> {
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .context("cannot run `sync`")?;
    anyhow::ensure!(status.success(), "`sync` failed: {status}");
    Ok(())
}

/// Reads `child`'s run to its completion, checking every sequence number
/// follows the last and every token is there; pauses 1 s every `pause_every`
/// events. Returns the count and the run's start and end as logged.
async fn read_all(
    mut rx: EventStream,
    child: String,
    expect: u64,
    pause_every: Option<u64>,
) -> Result<(u64, (Duration, Duration))> {
    let (mut n, mut last, mut started) = (0u64, None::<u64>, None);
    let since_epoch = |logged: &bamboo_engine::LoggedEvent| {
        Duration::from_micros(logged.time.timestamp_micros().max(0) as u64)
    };
    while let Some(logged) = rx.next().await {
        follows(&mut last, logged.seq)?;
        match &*logged.event {
            AgentEvent::SubAgentStarted {
                child_session_id, ..
            } if *child_session_id == child => {
                started = Some(since_epoch(&logged));
            }
            AgentEvent::SubAgentEvent {
                child_session_id, ..
            } if **child_session_id == *child => {
                n += 1;
                if pause_every.is_some_and(|p| n.is_multiple_of(p)) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                error,
                ..
            } if *child_session_id == child => {
                if *status != CompletionStatus::Completed {
                    bail!("child ended {status:?}: {error:?}");
                }
                if n < expect {
                    bail!("saw {n} of {expect} events");
                }
                let start = started.context("no sub_agent_started before the completion")?;
                return Ok((n, (start, since_epoch(&logged))));
            }
            ev @ AgentEvent::EventsTruncated { .. } => bail!("the log lost events: {ev:?}"),
            _ => {}
        }
    }
    bail!("the stream ended before the child completed")
}

/// Records the highest RSS seen, every 20 ms.
async fn sample_rss(peak: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    loop {
        let now = rss_mib();
        let old = f64::from_bits(peak.load(std::sync::atomic::Ordering::Relaxed));
        if now > old {
            peak.store(now.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This process's resident set, MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
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
