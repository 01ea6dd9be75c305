//! Bamboo fleet engine: run an agent's sub-agents as isolated worker
//! processes, from a tokio program.
//!
//! Build one [`Engine`] with [`Engine::builder`] and share it (it is a cheap
//! `Clone`). Create a root session, [`spawn`](Engine::spawn) [`Child`]ren
//! under it, and hold each one's [`ChildHandle`]: its
//! [`events`](ChildHandle::events) (lossless, from its first event however
//! late you look), its outcome ([`wait`](ChildHandle::wait)), steering
//! ([`send`](ChildHandle::send)) and [`cancel`](ChildHandle::cancel).
//! Approval requests of gated actions reach an [`ApprovalPolicy`], or a
//! human through [`Engine::approval_requests`] and [`Engine::answer_approval`].
//!
//! ```
//! use bamboo_engine::{Child, CompletionStatus, Engine, ExecutorSpec};
//! use futures::StreamExt;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), bamboo_engine::EngineError> {
//! // A throwaway engine whose children echo their assignment. The
//! // `bamboo-worker` program is found on its own (BAMBOO_WORKER_BIN, next
//! // to this program, cargo's target directory, PATH).
//! let engine = Engine::builder()
//!     .ephemeral()
//!     .executor(ExecutorSpec::Echo)
//!     .build()
//!     .await?;
//! let parent = engine.create_root("orchestrator", None).await?;
//! let child = engine
//!     .spawn(Child::new(&parent.id, "hello from a child").role("helper"))
//!     .await?;
//! // Nothing is missed: the stream starts at the child's first event and
//! // ends with its completion.
//! let mut events = child.events();
//! while let Some(logged) = events.next().await {
//!     println!("#{} {}", logged.seq, logged.event.type_name().unwrap_or("?"));
//! }
//! let outcome = child.wait().await?;
//! assert_eq!(outcome.status, CompletionStatus::Completed);
//! assert!(outcome.result.unwrap_or_default().contains("hello from a child"));
//! engine.shutdown().await; // also removes the temporary data directory
//! # Ok(())
//! # }
//! ```
//!
//! Beyond handles, the engine offers the child actions as typed calls
//! ([`Engine::create_child`], [`Engine::list_children`],
//! [`Engine::get_child`], [`Engine::update_child`], [`Engine::run_child`],
//! [`Engine::send_message`], [`Engine::cancel_child`],
//! [`Engine::delete_child`]) and each session's whole event log
//! ([`Engine::events`]: every descendant's events in order); [`tool`] is
//! the same actions as one JSON tool for an agent's tool interface, and
//! [`store`] the session store an application may replace; [`launch`] is
//! where a run's worker comes from (local processes, resident remote
//! workers, NATS pools), for an application that brings its own. See
//! `docs/ARCHITECTURE.md` for the life of a child run.

#![warn(missing_docs)]
// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actions;
mod api_nested;
mod approval;
mod ask;
mod assignment;
mod batch;
mod child;
mod config;
mod creation;
mod credentials;
mod discover;
mod engine;
mod error;
mod escalation;
mod events;
mod fingerprint;
mod handle;
mod inbox;
pub mod launch;
mod leases;
mod nested;
mod parents;
pub mod project;
mod provision;
mod pump;
mod recovery;
mod reservations;
mod run_path;
mod scratch;
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
    ApprovalError, ApprovalPolicy, ApprovalRequest, ApprovalStream, Approved, DecidedBy, Decision,
    PendingApproval,
};
/// Re-exported so applications can implement [`ApprovalPolicy`] and
/// [`launch::Launcher`] without depending on `async-trait` themselves.
pub use async_trait::async_trait;
pub use bamboo_domain::{
    AgentEvent, ChildStatus, CompletionStatus, ModelRef, Session, SessionId, TokenUsage,
    WorktreeOutcome,
};
/// What a NATS pool client needs ([`EngineBuilder::nats_pool`]).
pub use bamboo_pool::{ClientSettings, NatsOptions, PoolClient, PoolError};
pub use bamboo_subagent::spec::{
    ClaudeCodeSpec, CodexMode, CodexSpec, ExecutorSpec, Placement, ProviderCredential,
};
pub use bamboo_subagent::Secret;
pub use child::Child;
pub use credentials::CredentialResolver;
pub use engine::{Engine, EngineBuilder, EngineStats};
pub use error::EngineError;
/// The event log alone, for `cargo xtask bench` (cargo feature `bench`).
#[cfg(feature = "bench")]
pub use events::bench;
pub use events::{EventStream, LogTail, LoggedEvent, Since};
pub use handle::{ChildEvents, ChildHandle, ChildOutcome};
pub use inbox::{InboxError, InboxKind, InboxMessage};
pub use launch::RemoteEndpoint;
pub use project::NewRoot;
pub use spawn::{RunReport, RunTicket};
pub use timeouts::Timeouts;
pub use types::{
    CancelOutcome, ChildDetail, ChildSummary, CreateChild, DeleteOutcome, Retry, SendMessage,
    SendOutcome, UpdateChild, UpdateOutcome,
};
pub use warm::WarmLimits;
