//! Reading one run's frames from the runs stream, in order, with the
//! run's position (JetStream stream sequence of a batch plus the line within
//! it), so a reader that restarts goes on from where the last one stopped.
//! While the run waits in the queue the reader enforces the queue timeout;
//! once a worker took it, it watches that worker's lease.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::TerminalStatus;
use bamboo_subagent::frames::{ChildFrame, Terminal};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{ClientSettings, RunState, Shared};
use crate::error::PoolError;
use crate::follow::Follower;
use crate::wire::{OutLine, Taken};

/// How far a reader got: the stream sequence of the last message it read
/// from and how many of that message's lines it handed out. `seq == 0`:
/// nothing read yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunPosition {
    /// JetStream stream sequence of the batch.
    pub seq: u64,
    /// Lines of that batch already handed out.
    pub lines: u32,
}

fn check_interval(period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Reads one run's frames.
pub struct RunReader {
    shared: Arc<Shared>,
    state: watch::Receiver<RunState>,
    settings: ClientSettings,
    url: String,
    /// Frames at or before this were read by an earlier reader.
    skip_until: RunPosition,
    follower: Follower,
    lines: VecDeque<String>,
    position: RunPosition,
    worker: Option<Taken>,
    queued_at: Option<Instant>,
    /// Queue-timeout and lease checks; kept across calls so a chatty run
    /// costs no extra check per frame.
    tick: tokio::time::Interval,
    done: bool,
}

impl std::fmt::Debug for RunReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunReader")
            .field("run_id", &self.shared.run_id)
            .field("position", &self.position)
            .field("worker", &self.worker)
            .finish()
    }
}

impl RunReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        settings: ClientSettings,
        url: String,
        skip_until: RunPosition,
    ) -> Self {
        Self {
            state: shared.state.subscribe(),
            follower: Follower::new(
                shared.pool.client.clone(),
                shared.pool.runs.clone(),
                shared.pool.name.out_subject(&shared.run_id),
                0,
            ),
            shared,
            settings,
            url,
            skip_until,
            lines: VecDeque::new(),
            position: RunPosition::default(),
            worker: None,
            queued_at: None,
            tick: check_interval(settings.lease_check),
            done: false,
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// How far this reader got; hand it to [`crate::PoolClient::attach`] to
    /// read on after a restart.
    pub fn position(&self) -> RunPosition {
        self.position
    }

    /// The worker that took the run, once known.
    pub fn worker(&self) -> Option<&Taken> {
        self.worker.as_ref()
    }

    /// Whether the run ended (its terminal frame was handed out).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next child frame; `None` after the terminal frame.
    pub async fn recv(&mut self) -> Option<Result<ChildFrame, PoolError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(frame) = self.next_buffered() {
                return Some(Ok(frame));
            }
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() {
                        // The sender is gone: nothing more changes; keep reading.
                        self.state = self.shared.state.subscribe();
                    }
                    if let Some(end) = self.on_state() {
                        return Some(end);
                    }
                }
                m = self.follower.next() => match m {
                    Ok((seq, m)) => self.take_message(seq, &m),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
                _ = self.tick.tick() => {
                    if let Some(end) = self.check().await {
                        return Some(end);
                    }
                }
            }
        }
    }

    /// Pops buffered lines until a child frame to hand out.
    fn next_buffered(&mut self) -> Option<ChildFrame> {
        while let Some(line) = self.lines.pop_front() {
            self.position.lines += 1;
            let parsed = OutLine::parse(&line);
            match parsed {
                Ok(OutLine::Taken(t)) => {
                    tracing::debug!(run = %self.shared.run_id, worker = %t.worker, host = %t.host, "run taken");
                    self.worker = Some(t);
                }
                Ok(OutLine::Child(_)) if self.position <= self.skip_until => {}
                Ok(OutLine::Child(frame)) => {
                    if matches!(frame, ChildFrame::Terminal(_)) {
                        self.finish();
                    }
                    return Some(frame);
                }
                Err(e) => tracing::debug!(error = %e, "skipping a malformed run frame"),
            }
        }
        None
    }

    fn take_message(&mut self, seq: u64, m: &async_nats::jetstream::Message) {
        self.position = RunPosition { seq, lines: 0 };
        let text = String::from_utf8_lossy(&m.payload);
        self.lines.extend(text.split('\n').map(str::to_owned));
    }

    /// A state change the sender made: queued (start the queue clock) or
    /// removed from the queue by a cancel.
    fn on_state(&mut self) -> Option<Result<ChildFrame, PoolError>> {
        let state = *self.state.borrow_and_update();
        match state {
            RunState::Queued if self.queued_at.is_none() => {
                self.queued_at = Some(Instant::now());
                None
            }
            RunState::CancelledQueued if self.worker.is_none() => {
                self.finish();
                Some(Ok(ChildFrame::Terminal(Terminal {
                    status: TerminalStatus::Cancelled,
                    result: None,
                    error: Some(format!(
                        "cancelled while queued in pool {}; no worker ran it",
                        self.shared.pool.name
                    )),
                    transcript: None,
                    usage: None,
                    agent_session_id: None,
                })))
            }
            RunState::QueueFailed => {
                self.done = true;
                let why = self
                    .shared
                    .failure
                    .lock()
                    .ok()
                    .and_then(|f| f.clone())
                    .unwrap_or_else(|| "the server did not confirm the run".into());
                Some(Err(PoolError::JetStream {
                    what: format!("queueing run {}", self.shared.run_id),
                    reason: why,
                }))
            }
            _ => None,
        }
    }

    /// Periodic checks: the queue timeout, and the serving worker's lease.
    async fn check(&mut self) -> Option<Result<ChildFrame, PoolError>> {
        let name = self.shared.pool.name.clone();
        if let Some(t) = self.worker.clone() {
            return match self.shared.pool.lease(&t.worker).await {
                Ok(None) => {
                    self.done = true;
                    Some(Err(PoolError::WorkerLost {
                        pool: name.to_string(),
                        worker: t.worker,
                        host: t.host,
                    }))
                }
                // Alive, or NATS unreachable for now: nothing is known.
                _ => None,
            };
        }
        if self.queued_at.is_none() && *self.state.borrow() == RunState::Queued {
            self.queued_at = Some(Instant::now());
        }
        let waited = self
            .queued_at
            .map(|t| t.elapsed())
            .unwrap_or(Duration::ZERO);
        if waited < self.settings.queue_timeout {
            return None;
        }
        if !self.shared.unqueue().await {
            // A worker may hold it right now; its `taken` notice decides.
            if waited < self.settings.queue_timeout + Duration::from_secs(5) {
                return None;
            }
        }
        self.done = true;
        Some(Err(PoolError::QueueTimeout {
            pool: name.to_string(),
            waited: self.settings.queue_timeout,
            url: self.url.clone(),
        }))
    }

    /// The run is over: its frames are no longer needed on the server.
    fn finish(&mut self) {
        self.done = true;
        let runs = self.shared.pool.runs.clone();
        let filter = format!(
            "bamboo.pool.{}.run.{}.>",
            self.shared.pool.name, self.shared.run_id
        );
        tokio::spawn(async move {
            if let Err(e) = runs.purge().filter(filter).await {
                tracing::debug!(error = %e, "could not purge a finished run's frames");
            }
        });
    }
}
