//! Bamboo fleet engine: run an agent's sub-agents as isolated actor worker
//! processes.
//!
//! Build one [`Engine`] with [`Engine::builder`] and share it. It offers the
//! child actions (C1-C8) as typed calls, per-session event streams, approval
//! answers and a graceful shutdown; [`tool`] is the thin JSON layer for a tool
//! interface. See `docs/ARCHITECTURE.md` for the life of a child run.
//!
//! Module map: [`store`] (sessions on disk), [`fingerprint`] and [`pool`] (warm
//! pool), [`slots`] (running-actor limit), [`approval`], [`watchdog`],
//! [`steering`], [`events`] (the lossless event logs), [`worker`] and [`fleet_launcher`]
//! (workers), [`credentials`]; private: the spawn path, the event pump, the
//! runner, nested spawns, recovery.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actions;
mod api_nested;
pub mod approval;
mod ask;
mod assignment;
mod batch;
mod config;
mod creation;
pub mod credentials;
mod engine;
mod error;
pub mod escalation;
pub mod events;
mod fingerprint;
pub mod fleet_launcher;
pub mod inbox;
mod nested;
mod parents;
pub mod placement;
mod pool;
mod pool_journal;
pub mod pool_launcher;
pub mod project;
mod provision;
mod pump;
mod recovery;
mod remote_launcher;
mod runner;
mod runs;
mod runtime;
mod slots;
mod spawn;
mod steering;
pub mod store;
pub mod tool;
mod types;
pub mod usage;
mod watchdog;
pub mod worker;
pub mod worktree;
mod writeback;

pub use approval::{
    ApprovalError, ApprovalPolicy, ApprovalRequest, ApprovalStream, DecidedBy, Decision,
    PendingApproval,
};
/// Re-exported so applications can implement [`ApprovalPolicy`] and
/// [`worker::WorkerLauncher`] without depending on `async-trait` themselves.
pub use async_trait::async_trait;
/// Re-exported: where a child runs.
pub use bamboo_subagent::spec::Placement;
pub use config::Timeouts;
pub use engine::{Engine, EngineBuilder, EngineStats};
pub use error::EngineError;
pub use escalation::{ChildApprovalReviewer, BYPASS_KEY};
/// The event log alone, for `cargo xtask bench`; not part of the API.
#[doc(hidden)]
pub use events::bench;
pub use events::{EventStream, LogLimits, LogTail, LoggedEvent, Since};
pub use inbox::{InboxKind, InboxMessage};
pub use placement::{RemoteEndpoint, PLACEMENT_KEY};
pub use pool::PoolLimits;
pub use project::NewRoot;
pub use provision::DISABLED_TOOLS_KEY;
pub use spawn::{RunReport, RunTicket};
pub use types::{
    CancelOutcome, ChildDetail, ChildSummary, CreateChild, DeleteOutcome, Retry, SendMessage,
    SendOutcome, UpdateChild, UpdateOutcome,
};
