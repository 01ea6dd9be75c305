//! What one run publishes to: the logs of its parent and every further
//! ancestor, taken once per run so the per-event path touches no engine
//! lock. An event is serialized once, whatever the number of logs.

use std::cell::Cell;
use std::sync::Arc;

use bamboo_domain::AgentEvent;

use super::log::SessionLog;
use super::EventLogs;

/// The logs a run publishes to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fanout {
    logs: Vec<Arc<SessionLog>>,
}

/// Serialized form of an event that cannot be serialized (not expected:
/// every event is plain JSON), so a log line is never malformed.
const UNSERIALIZABLE: &str = r#"{"type":"error","message":"an event could not be serialized"}"#;

/// About how long `event`'s JSON is: a completion with a long answer is
/// written into room made for it once, not into a buffer that doubles
/// (twice the answer, and a copy, at the moment it is largest).
fn size_hint(event: &AgentEvent) -> usize {
    const FIELDS: usize = 512;
    match event {
        AgentEvent::SubAgentCompleted { result, error, .. } => {
            FIELDS + result.as_ref().map_or(0, String::len) + error.as_ref().map_or(0, String::len)
        }
        _ => FIELDS,
    }
}

impl Fanout {
    /// The logs of `sessions` (ids that cannot be sessions are skipped).
    pub fn new(logs: &EventLogs, sessions: &[String]) -> Self {
        Self {
            logs: sessions.iter().filter_map(|s| logs.log(s)).collect(),
        }
    }

    /// Appends `event` to every log.
    pub fn publish(&self, event: AgentEvent) {
        if self.logs.is_empty() {
            return;
        }
        let mut json = Vec::with_capacity(size_hint(&event));
        if serde_json::to_writer(&mut json, &event).is_err() {
            json = UNSERIALIZABLE.into();
        }
        self.append(Arc::new(event), &json);
    }

    fn append(&self, event: Arc<AgentEvent>, json: &[u8]) {
        self.append_at(now_micros(), event, json);
    }

    fn append_at(&self, micros: i64, event: Arc<AgentEvent>, json: &[u8]) {
        for log in &self.logs {
            log.append(micros, &event, json);
            log.write_soon();
        }
    }

    /// Writes every log's buffered lines to its file (see
    /// [`SessionLog::write_pending`]).
    pub fn write_pending(&self) {
        for log in &self.logs {
            log.write_pending();
        }
    }

    /// Marks a run as publishing to these logs until [`Fanout::finish_run`].
    pub fn start_run(&self) {
        for log in &self.logs {
            log.writer_started();
        }
    }

    /// The run started with [`Fanout::start_run`] ended: idle logs give their
    /// memory back.
    pub fn finish_run(&self) {
        for log in &self.logs {
            log.writer_finished();
        }
    }

    /// Syncs every log soon (a run ended), off the caller's path.
    pub fn sync_in_background(&self) {
        for log in &self.logs {
            log.sync_soon();
        }
    }
}

/// Now, in microseconds since the Unix epoch, as log lines record it. The
/// system clock alone: chrono's `Utc::now` would also work out the calendar
/// date, which the log line does not need.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The hot path of one run: wraps each child event as `sub_agent_event`,
/// with the wrapper's JSON prefix built once.
pub(crate) struct ChildEvents {
    fanout: Fanout,
    parent: Arc<str>,
    child: Arc<str>,
    prefix: String,
    /// The line buffer, reused from event to event.
    scratch: Cell<Vec<u8>>,
}

impl std::fmt::Debug for ChildEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEvents")
            .field("fanout", &self.fanout)
            .field("parent", &self.parent)
            .field("child", &self.child)
            .finish_non_exhaustive()
    }
}

impl ChildEvents {
    /// Events of `child` (whose parent is `parent`) going to `fanout`.
    pub fn new(fanout: Fanout, parent: &str, child: &str) -> Self {
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let prefix = format!(
            r#"{{"type":"sub_agent_event","parent_session_id":{},"child_session_id":{},"event":"#,
            quote(parent),
            quote(child)
        );
        Self {
            fanout,
            parent: parent.into(),
            child: child.into(),
            prefix,
            scratch: Cell::new(Vec::new()),
        }
    }

    /// Publishes one event of the child, logged at `micros` (see
    /// [`now_micros`]; frames that arrived together share one reading).
    pub fn publish_at(&self, micros: i64, event: AgentEvent) {
        if self.fanout.logs.is_empty() {
            return;
        }
        let mut json = self.scratch.take();
        json.clear();
        json.extend_from_slice(self.prefix.as_bytes());
        if event.write_json(&mut json).is_err() {
            json.truncate(self.prefix.len());
            json.extend_from_slice(UNSERIALIZABLE.as_bytes());
        }
        json.push(b'}');
        let wrapped = AgentEvent::SubAgentEvent {
            parent_session_id: self.parent.clone(),
            child_session_id: self.child.clone(),
            event: Box::new(event),
        };
        self.fanout.append_at(micros, Arc::new(wrapped), &json);
        self.scratch.set(json);
    }
}

/// Where a run reports: its ancestry (parent first) and their logs, which
/// count it as a writer while it lives.
#[derive(Debug)]
pub(crate) struct RunLogs {
    pub ancestry: Vec<String>,
    pub fanout: Fanout,
}

impl RunLogs {
    pub fn new(fanout: Fanout, ancestry: Vec<String>) -> Self {
        fanout.start_run();
        Self { ancestry, fanout }
    }
}

impl Drop for RunLogs {
    fn drop(&mut self) {
        self.fanout.finish_run();
    }
}
