//! The engine's error type: each message names what failed and what to do.

use crate::approval::ApprovalError;
use crate::store::StoreError;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No session has this id.
    #[error("session {0} not found: check the id (list the parent's children to see valid ids)")]
    NotFound(String),
    /// The session is not a child session.
    #[error("session {0} is a root session, not a child: child actions need a child id")]
    NotAChild(String),
    /// The child belongs to another parent.
    // Behaviours: C9.
    #[error(
        "session {child} is not a child of {parent}: a caller can only act on its own children"
    )]
    NotYourChild {
        /// The child asked for.
        child: String,
        /// The caller.
        parent: String,
    },
    /// A run is queued or in flight.
    // Behaviours: E5.
    #[error(
        "child {0} is already running: wait for its sub_agent_completed event, or cancel it first"
    )]
    AlreadyRunning(String),
    /// Input that cannot be acted on.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Nested spawn at or beyond the cap.
    // Behaviours: E18.
    #[error("spawn depth cap {cap} reached: session {parent} is at depth {depth} and may not spawn children; do the work itself")]
    DepthCap {
        /// The would-be parent.
        parent: String,
        /// Its depth.
        depth: u32,
        /// The cap.
        cap: u32,
    },
    /// `shutdown` was called.
    #[error("the engine is shutting down: no new runs are accepted")]
    ShuttingDown,
    /// The builder is missing something.
    #[error("engine configuration: {0}")]
    Config(String),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A session's durable inbox failed.
    #[error(transparent)]
    Inbox(#[from] crate::inbox::InboxError),
    /// Answering an approval failed.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}
