//! Domain types of Bamboo fleet: sessions, messages, agent events and statuses.
//!
//! Pure data and serde: nothing here does I/O or depends on an async runtime, so
//! every other crate (and every other process) can share these shapes. The JSON
//! forms are the wire forms of `shared/protocol.md`; tests pin them to literal
//! JSON.

pub mod budget;
pub mod event;
pub mod message;
pub mod session;
pub mod status;
pub mod tasks;
pub mod tool_phase;

pub use budget::TokenBudget;
pub use event::{AgentEvent, TokenUsage, WorktreeOutcome};
pub use message::{Message, Role};
pub use session::{ChildInfo, ModelRef, Session, SessionId, SessionKind};
pub use status::{ChildStatus, CompletionStatus, ParseStatusError, TerminalStatus};
pub use tasks::{TaskItem, TaskItemStatus, TaskList};
pub use tool_phase::{LastTool, ToolPhase};
