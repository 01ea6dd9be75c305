//! The AgentRecord (protocol.md section 3): what a live actor publishes into the
//! discovery fabric.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One live actor's discovery record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Equals `identity.child_id`.
    pub agent_id: String,
    /// The actor's role.
    #[serde(default)]
    pub role: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `ws://127.0.0.1:<port>` (or `wss://...` for a resident worker).
    pub endpoint: String,
    /// The worker's process id.
    pub pid: u32,
    /// The worker's version.
    #[serde(default)]
    pub version: String,
    /// When the worker started.
    pub started_at: DateTime<Utc>,
    /// The record is stale once now is past this.
    pub lease_expires_at: DateTime<Utc>,
}

impl AgentRecord {
    /// True while the lease has not run out at `now`.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        now <= self.lease_expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_literal_json() {
        let json = r#"{"agent_id":"c1","role":"r","labels":["a"],"endpoint":"ws://127.0.0.1:4000","pid":42,"version":"0.1.0","started_at":"2026-01-02T03:04:05Z","lease_expires_at":"2026-01-02T03:05:05Z"}"#;
        let r: AgentRecord = serde_json::from_str(json).unwrap();
        assert_eq!(r.pid, 42);
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
        assert!(r.is_live_at(r.started_at));
        assert!(!r.is_live_at(r.lease_expires_at + chrono::Duration::seconds(1)));
    }

    #[test]
    fn record_defaults_labels_and_version() {
        let r: AgentRecord = serde_json::from_str(
            r#"{"agent_id":"c","endpoint":"ws://127.0.0.1:1","pid":1,"started_at":"2026-01-02T03:04:05Z","lease_expires_at":"2026-01-02T03:04:05Z","x":true}"#,
        )
        .unwrap();
        assert!(r.labels.is_empty());
        assert_eq!(r.version, "");
    }
}
