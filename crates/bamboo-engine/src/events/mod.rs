//! Lossless event delivery (stronger than the reference's): every session
//! has an append-only event log, and subscribers read it as a stream.
//!
//! A session's log holds the events of every run of its descendants, in the
//! parent-stream form (`sub_agent_started`, `sub_agent_event`, heartbeats,
//! `child_approval_requested`, `sub_agent_completed`), each with the log's own
//! sequence number (1, 2, ... with no gap). A run appends each event to the
//! log of its parent and of every further ancestor, so subscribing to a root
//! yields the whole tree, each run's events in order.
//!
//! Publishing never waits on a reader: it appends to memory (a ring of the
//! newest events) and to a write buffer that goes to the file in large
//! batches. A reader that keeps up is served from the ring; one that falls
//! behind it continues from the file, transparently, and catches up. Memory
//! is bounded per log (the ring) and per reader (one batch).
//!
//! Durability: lines are written in batches, and each log is `fdatasync`ed
//! soon after a run ends (in the background, once per `SYNC_WINDOW` of 10 ms
//! for all the runs that end in it: group commit) and at shutdown. The file
//! is capped (`EngineBuilder::event_log_cap`, default 1 GiB); past it, new
//! events live only in the ring, and a reader that misses them gets an
//! `events_truncated` event naming the lost numbers; the same goes for events
//! a failed write (a full disk) lost. A lost stretch never takes a run's
//! start, end or approval request: those are kept in memory and read in
//! their place between the losses, so a reader that counts runs sees each
//! one end. A log no run writes to
//! keeps only its newest 128 events in memory. The log is deleted with its
//! session.
//!
//! Module map: `log` (one session's log: sequence, ring, file, cap), `line`
//! (the file format), `read` (reading a log file back), `stream` (a
//! subscriber), `fanout` (what a run publishes to), `tail` (reading a log with no
//! engine).

#[cfg(feature = "bench")]
pub mod bench;
mod fanout;
mod fast;
mod line;
mod log;
mod read;
mod stream;
mod tail;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use log::SessionLog;

use bamboo_domain::AgentEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub(crate) use fanout::{now_micros, ChildEvents, Fanout, RunLogs};
pub use stream::EventStream;
pub use tail::LogTail;

/// Events kept in memory per log by default (the newest ones).
pub const DEFAULT_RING_EVENTS: usize = 65_536;
/// Default size cap of one session's log file: 1 GiB.
pub const DEFAULT_LOG_CAP_BYTES: u64 = 1 << 30;

/// One event of a session's log. Cheap to clone: the event is shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Position in the session's log: 1 for the first event, no gaps.
    pub seq: u64,
    /// When the engine logged it.
    pub time: DateTime<Utc>,
    /// The event, in the parent-stream form. Shared with the log's memory
    /// and every other reader (match on `&*logged.event`; `Arc::unwrap_or_clone`
    /// for an owned one), so a reader costs no copy of the event.
    pub event: Arc<AgentEvent>,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From the first event ever logged.
    Start,
    /// From the event after sequence number `n` (`After(0)` is `Start`).
    After(u64),
    /// From the next event published.
    Now,
}

/// Sizes of the event logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Events kept in memory per log for live readers.
    pub ring_events: usize,
    /// Largest log file; later events of that log are not written, and the
    /// loss is reported as an `events_truncated` event.
    pub cap_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            ring_events: DEFAULT_RING_EVENTS,
            cap_bytes: DEFAULT_LOG_CAP_BYTES,
        }
    }
}

/// The event logs of one engine, in `<data>/events/<session>.ndjson`.
#[derive(Debug)]
pub(crate) struct EventLogs {
    dir: PathBuf,
    limits: LogLimits,
    logs: Mutex<HashMap<String, Arc<SessionLog>>>,
}

impl EventLogs {
    /// Logs under `dir` (created on the first write, mode 0700).
    pub fn new(dir: PathBuf, limits: LogLimits) -> Self {
        Self {
            dir,
            limits: LogLimits {
                ring_events: limits.ring_events.max(16),
                cap_bytes: limits.cap_bytes,
            },
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// `session`'s log, opened on first use. `None` for an id that cannot
    /// name a file (it was never a session).
    pub fn log(&self, session: &str) -> Option<Arc<SessionLog>> {
        crate::store::check_id(session).ok()?;
        let mut map = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let log = map.entry(session.to_owned()).or_insert_with(|| {
            let path = self.dir.join(format!("{session}.ndjson"));
            Arc::new(SessionLog::open(session, path, self.limits))
        });
        Some(log.clone())
    }

    /// A live stream of `session`'s log.
    pub fn subscribe(&self, session: &str, since: Since, until_now: bool) -> EventStream {
        match self.log(session) {
            Some(log) => EventStream::new(log, since, until_now),
            None => EventStream::empty(),
        }
    }

    /// Deletes `session`'s log: readers end, the file is removed.
    pub fn remove(&self, session: &str) {
        let log = self
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session);
        match log {
            Some(log) => log.delete(),
            None => {
                if crate::store::check_id(session).is_ok() {
                    let _ = std::fs::remove_file(self.dir.join(format!("{session}.ndjson")));
                }
            }
        }
    }

    /// Writes and syncs every log, then ends every reader once it has read
    /// everything (engine shutdown).
    pub async fn close(&self) {
        let all: Vec<_> = self
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for log in all {
            log.sync().await;
            log.close();
        }
    }
}

#[cfg(test)]
mod tests;
