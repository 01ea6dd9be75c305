//! The event log alone, in-process (part of the engine group): what one
//! child event costs to publish, to publish and read live, and to read back
//! from the file by a subscriber that fell behind the in-memory ring. No
//! worker, no socket: the floor under the engine's forwarding figures.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bamboo_domain::AgentEvent;
use bamboo_engine::bench::LogBench;
use bamboo_engine::EventStream;
use futures::StreamExt;

use super::median;

/// Events per measurement.
const N: u64 = 1_000_000;
/// Measurements per figure (the median is reported).
const RUNS: usize = 3;

/// Prints the three per-event costs, medians of [`RUNS`] runs.
pub async fn run() -> Result<()> {
    let (mut publish, mut live, mut disk) = (vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().context("cannot create a temp directory")?;
        let logs = std::sync::Arc::new(LogBench::new(dir.path()));
        publish.push(publish_only(&logs, "a").await?);
        live.push(publish_and_read(&logs, "b").await?);
        disk.push(read_back(&logs, "a").await?);
    }
    println!(
        "  (event log alone, per event: publish {:.0} ns; publish + live read {:.0} ns; \
         read back from the file {:.0} ns)",
        ns(median(publish)),
        ns(median(live)),
        ns(median(disk))
    );
    let (fast, serde) = (parse_cost(false)?, parse_cost(true)?);
    println!(
        "  (parsing one log line of a child's token: {:.0} ns; by serde alone {:.0} ns)",
        ns(fast),
        ns(serde)
    );
    Ok(())
}

/// Median time to parse a `sub_agent_event` token line as the engine writes it.
fn parse_cost(serde_only: bool) -> Result<Duration> {
    const LINES: u32 = 200_000;
    let line = format!(
        r#"{{"seq":123456,"t":1763780000123456,"event":{{"type":"sub_agent_event","parent_session_id":"{}","child_session_id":"{}","event":{{"type":"token","content":"w "}}}}}}"#,
        "0b6f3f5e-8a57-4a53-9d4e-3f1c2b7a9e01", "7c2d9a14-5e3b-4f6a-8b1c-2d4e6f8a0b13"
    );
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        for _ in 0..LINES {
            if !bamboo_engine::bench::parse_line(std::hint::black_box(line.as_bytes()), serde_only)
            {
                bail!("the benchmark's log line did not parse: {line}");
            }
        }
        runs.push(t.elapsed() / LINES);
    }
    Ok(median(runs))
}

fn token() -> AgentEvent {
    AgentEvent::token("w ")
}

/// Publishes [`N`] child events to `session`'s log, nobody reading.
async fn publish_only(logs: &std::sync::Arc<LogBench>, session: &str) -> Result<Duration> {
    let logs = logs.clone();
    let session = session.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = logs.publisher(&session, "child");
        let t = Instant::now();
        for _ in 0..N {
            out.publish(token());
        }
        t.elapsed() / N as u32
    })
    .await
    .context("the publishing thread failed")
}

/// Publishes [`N`] events from a blocking thread while a live subscriber
/// reads them; until the subscriber has the last one.
async fn publish_and_read(logs: &std::sync::Arc<LogBench>, session: &str) -> Result<Duration> {
    let reader = tokio::spawn(count(logs.subscribe(session)));
    let t = Instant::now();
    publish_only(logs, session).await?;
    reader.await.context("the reader failed")??;
    Ok(t.elapsed() / N as u32)
}

/// Reads `session`'s [`N`] events from the start: all but the ring's worth
/// come from the file.
async fn read_back(logs: &LogBench, session: &str) -> Result<Duration> {
    let t = Instant::now();
    count(logs.subscribe(session)).await?;
    Ok(t.elapsed() / N as u32)
}

/// Reads [`N`] events, checking their sequence numbers run 1, 2, ...
async fn count(mut events: EventStream) -> Result<()> {
    for seq in 1..=N {
        let Some(logged) = events.next().await else {
            bail!("the log ended after {} of {N} events", seq - 1);
        };
        if logged.seq != seq {
            bail!("expected event {seq}, got {}", logged.seq);
        }
    }
    Ok(())
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}
