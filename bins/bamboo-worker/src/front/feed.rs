//! The engine's streams as the front door consumes them: the root session's
//! event log and the approval requests under it.
//!
//! TEMPORARY (until the lossless event log lands on main): built on the
//! lossy `Engine::subscribe`; the real version wraps `Engine::events` and
//! `Engine::approval_requests`.

use bamboo_domain::AgentEvent;
use bamboo_engine::Engine;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

/// One event of the root's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// 1-based position in the log.
    pub seq: u64,
    /// When it was logged.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The event.
    pub event: AgentEvent,
}

/// A request waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAsk {
    /// Id to answer with.
    pub id: String,
    /// The asking session.
    pub child_session_id: String,
    /// Its parent.
    pub parent_session_id: Option<String>,
    /// The tool.
    pub tool_name: String,
    /// Kind of permission.
    pub permission: String,
    /// Exact command or path.
    pub resource: String,
}

/// Every event of `root`'s log from the start, in order.
pub fn events(engine: &Engine, root: &str) -> BoxStream<'static, LoggedEvent> {
    let rx = engine.subscribe(root);
    futures::stream::unfold((rx, 0u64), |(mut rx, seq)| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let item = LoggedEvent {
                        seq: seq + 1,
                        time: chrono::Utc::now(),
                        event,
                    };
                    return Some((item, (rx, seq + 1)));
                }
                Err(RecvError::Lagged(n)) => tracing::warn!(lost = n, "event stream lagged"),
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// Approval requests under `root` that wait for a person.
pub fn approvals(engine: &Engine, root: &str) -> BoxStream<'static, PendingAsk> {
    events(engine, root)
        .filter_map(|logged| async move {
            match logged.event {
                AgentEvent::ChildApprovalRequested {
                    child_session_id,
                    request_id,
                    tool_name,
                    permission,
                    resource,
                } => Some(PendingAsk {
                    id: request_id,
                    child_session_id,
                    parent_session_id: None,
                    tool_name,
                    permission,
                    resource,
                }),
                _ => None,
            }
        })
        .boxed()
}
