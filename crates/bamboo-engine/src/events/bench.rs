//! The event log on its own, for the micro-benchmarks of `cargo xtask bench
//! engine` (bench/src/eventlog.rs): publishing a child's events the way a
//! run does, and reading them back live or from the file. Not part of the
//! engine's API (hidden from its docs); it may change with the benchmarks.

use std::path::Path;
use std::sync::Arc;

use bamboo_domain::AgentEvent;

use super::{line, ChildEvents, EventLogs, EventStream, Fanout, LogLimits, Since};

/// Event logs in a directory of their own, with the default limits.
#[derive(Debug)]
pub struct LogBench {
    logs: Arc<EventLogs>,
}

impl LogBench {
    /// Logs under `dir` (created on the first write).
    pub fn new(dir: &Path) -> Self {
        Self {
            logs: Arc::new(EventLogs::new(dir.to_owned(), LogLimits::default())),
        }
    }

    /// A publisher of `child`'s events into `parent`'s log, as a run's pump
    /// publishes them (`sub_agent_event` wrappers).
    pub fn publisher(&self, parent: &str, child: &str) -> ChildPublisher {
        let fanout = Fanout::new(&self.logs, &[parent.to_owned()]);
        ChildPublisher(ChildEvents::new(fanout, parent, child))
    }

    /// `session`'s log from its first event on, live.
    pub fn subscribe(&self, session: &str) -> EventStream {
        self.logs.subscribe(session, Since::Start, false)
    }
}

/// Publishes one child's events (see [`LogBench::publisher`]).
#[derive(Debug)]
pub struct ChildPublisher(ChildEvents);

impl ChildPublisher {
    /// Publishes one event of the child.
    pub fn publish(&self, event: AgentEvent) {
        self.0.publish_at(super::now_micros(), event);
    }
}

/// Parses one log line (without its newline) as a reader behind the ring
/// does, or by serde alone when `serde_only`; whether it was an event line.
pub fn parse_line(text: &[u8], serde_only: bool) -> bool {
    let parsed = if serde_only {
        line::parse_with_serde(text)
    } else {
        line::parse(text)
    };
    matches!(parsed, Some(line::Line::Event(_)))
}
