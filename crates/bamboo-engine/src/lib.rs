//! Bamboo fleet engine: run an agent's sub-agents as isolated actor worker
//! processes.
//!
//! Build one [`Engine`] with [`Engine::builder`] and share it. It offers the
//! child actions (C1-C8) as typed calls, per-session event streams, approval
//! answers and a graceful shutdown; [`tool`] is the thin JSON layer for a tool
//! interface. See `docs/ARCHITECTURE.md` for the life of a child run.
//!
//! Module map: [`store`] (sessions on disk), [`approval`], [`events`] (the
//! lossless event logs), [`launch`] (where a run's worker comes from: local
//! processes, resident remote workers, NATS pools), [`credentials`]; private:
//! the warm pool, the running-actor limit, the spawn path, the event pump,
//! nested spawns, recovery.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actions;
mod api_nested;
pub mod approval;
mod ask;
mod assignment;
mod config;
mod creation;
pub mod credentials;
mod engine;
mod error;
pub mod escalation;
pub mod events;
mod fingerprint;
pub mod inbox;
pub mod launch;
mod leases;
mod nested;
pub mod project;
mod provision;
mod pump;
mod recovery;
mod reservations;
mod run_path;
mod slots;
mod spawn;
mod steering;
pub mod store;
mod timeouts;
pub mod tool;
mod types;
pub mod usage;
mod warm;
mod watchdog;
pub mod worktree;
mod writeback;

pub use approval::ChildApprovalReviewer;
pub use approval::{
    ApprovalError, ApprovalPolicy, ApprovalRequest, ApprovalStream, DecidedBy, Decision,
    PendingApproval,
};
/// Re-exported so applications can implement [`ApprovalPolicy`] and
/// [`launch::Launcher`] without depending on `async-trait` themselves.
pub use async_trait::async_trait;
/// Re-exported: where a child runs.
pub use bamboo_subagent::spec::Placement;
pub use engine::{Engine, EngineBuilder, EngineStats};
pub use error::EngineError;
pub use escalation::BYPASS_KEY;
/// The event log alone, for `cargo xtask bench`; not part of the API.
#[doc(hidden)]
pub use events::bench;
pub use events::{EventStream, LogLimits, LogTail, LoggedEvent, Since};
pub use inbox::{InboxKind, InboxMessage};
pub use launch::{RemoteEndpoint, PLACEMENT_KEY};
pub use project::NewRoot;
pub use provision::DISABLED_TOOLS_KEY;
pub use spawn::{RunReport, RunTicket};
pub use timeouts::Timeouts;
pub use types::{
    CancelOutcome, ChildDetail, ChildSummary, CreateChild, DeleteOutcome, Retry, SendMessage,
    SendOutcome, UpdateChild, UpdateOutcome,
};
pub use warm::WarmLimits;
