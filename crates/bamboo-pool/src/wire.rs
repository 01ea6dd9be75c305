//! Message shapes on the pool's subjects (docs/protocol.md, "Pools on NATS").
//!
//! * work queue: one [`WorkItem`] per run, JSON;
//! * `run.<id>.out`: a batch of lines, each one [`OutLine`]: a
//!   `{"kind":"taken",...}` notice from the worker that took the run, then
//!   the protocol's child frames (events, requests, terminal) verbatim;
//! * `run.<id>.in`: one parent frame (cancel, message, approval_reply,
//!   subagent_reply) per message, verbatim;
//! * lease bucket: one [`LeaseRecord`] per worker, keyed by worker id.

use bamboo_subagent::frames::{ChildFrame, RunRequest};
use bamboo_subagent::spec::ProvisionSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A queued run. The spec carries no secrets: pool workers hold their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The run's id: the token of its `run.<id>.*` subjects.
    pub run_id: String,
    /// The actor's spec, secrets removed.
    pub spec: ProvisionSpec,
    /// The `run` frame's content.
    pub request: RunRequest,
    /// When the engine queued it.
    pub queued_at: DateTime<Utc>,
    /// A worker that finds the run after this drops it: the engine has
    /// given up on it already.
    pub take_by: DateTime<Utc>,
}

/// The first line a worker writes on a run's `out` subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    /// Always `"taken"`.
    pub kind: String,
    /// The worker's id, its key in the lease bucket.
    pub worker: String,
    /// The worker's host name.
    pub host: String,
}

/// One line of an `out` message.
#[derive(Debug, Clone, PartialEq)]
pub enum OutLine {
    /// A worker took the run.
    Taken(Taken),
    /// A protocol child frame.
    Child(ChildFrame),
}

const TAKEN_PREFIX: &str = r#"{"kind":"taken""#;

impl OutLine {
    /// Parses one line.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        if line.starts_with(TAKEN_PREFIX) {
            return serde_json::from_str(line).map(Self::Taken);
        }
        ChildFrame::from_text(line).map(Self::Child)
    }
}

impl Taken {
    /// The notice of `worker` on `host`, as a line.
    pub fn line(worker: &str, host: &str) -> String {
        serde_json::to_string(&Self {
            kind: "taken".into(),
            worker: worker.into(),
            host: host.into(),
        })
        .unwrap_or_default()
    }
}

/// A worker's lease: the distributed counterpart of a fabric record,
/// renewed while the worker lives; the bucket's max age is the lease TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The pool.
    pub pool: String,
    /// The worker's id.
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Its program version.
    pub version: String,
    /// Most runs it takes at once.
    pub max_runs: usize,
    /// Runs it serves now.
    pub runs_in_flight: usize,
    /// When it joined.
    pub started_at: DateTime<Utc>,
    /// When this record was written.
    pub renewed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_lines_tell_taken_notices_from_child_frames() {
        let taken = Taken::line("w1", "host-a");
        assert_eq!(taken, r#"{"kind":"taken","worker":"w1","host":"host-a"}"#);
        assert!(matches!(OutLine::parse(&taken).unwrap(), OutLine::Taken(t) if t.worker == "w1"));
        let ev = r#"{"kind":"event","event":{"type":"token","content":"hi"}}"#;
        assert!(matches!(
            OutLine::parse(ev).unwrap(),
            OutLine::Child(ChildFrame::Event { .. })
        ));
        assert!(OutLine::parse("{").is_err());
    }
}
