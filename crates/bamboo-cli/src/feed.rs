//! The engine's streams as the front door consumes them: the root session's
//! lossless event log from its start, and the approval requests under it.

use bamboo_engine::{Engine, Since};
use futures::stream::{BoxStream, StreamExt};

pub use bamboo_engine::LoggedEvent;

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

/// Every event of `root`'s log from `since`, in order, without gaps (a
/// lost stretch is said explicitly by an `events_truncated` event). A new
/// root reads from its start; a resumed one from now, so the earlier run's
/// events are not counted again.
pub fn events(engine: &Engine, root: &str, since: Since) -> BoxStream<'static, LoggedEvent> {
    engine.events(root, since).boxed()
}

/// Approval requests under `root` that wait for a person: every one open
/// now, then each new one.
pub fn approvals(engine: &Engine, root: &str) -> BoxStream<'static, PendingAsk> {
    engine
        .approval_requests(Some(root))
        .map(|p| PendingAsk {
            parent_session_id: p.ancestry.first().cloned(),
            id: p.id,
            child_session_id: p.child_session_id,
            tool_name: p.tool_name,
            permission: p.permission,
            resource: p.resource,
        })
        .boxed()
}
