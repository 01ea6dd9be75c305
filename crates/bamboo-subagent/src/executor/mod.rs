//! The executor seam (F9): the engine that turns one run into events and an
//! outcome, independent of how the events travel.
//!
//! An executor gets the run request and a [`RunContext`]: an [`EventSink`] (with
//! an optional [`HostBridge`] for approvals and nested spawns), a steering inbox
//! and a cancellation token. It returns a [`RunOutcome`]. It must notice
//! cancellation promptly at every await point.

pub mod echo;
pub mod frame_host;

use std::sync::Arc;

use async_trait::async_trait;
use bamboo_domain::{AgentEvent, Message, TerminalStatus, TokenUsage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::frames::{ApprovalBody, RunRequest};

/// An engine that runs assignments.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs one assignment to its end.
    async fn run(&self, request: RunRequest, ctx: RunContext) -> RunOutcome;
}

/// How a run ended, as the executor reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// Terminal status.
    pub status: TerminalStatus,
    /// Final answer.
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The run's transcript, when kept.
    pub transcript: Option<Vec<Message>>,
    /// What the run used, when the executor counts it.
    pub usage: Option<TokenUsage>,
    /// The coding agent's session id, for the child's next run to resume.
    pub agent_session_id: Option<String>,
}

impl RunOutcome {
    /// A completed run with `result`.
    pub fn completed(result: impl Into<String>) -> Self {
        Self {
            status: TerminalStatus::Completed,
            result: Some(result.into()),
            error: None,
            transcript: None,
            usage: None,
            agent_session_id: None,
        }
    }

    /// A failed run with `error`.
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            status: TerminalStatus::Error,
            result: None,
            error: Some(error.into()),
            transcript: None,
            usage: None,
            agent_session_id: None,
        }
    }

    /// A cancelled run.
    pub fn cancelled() -> Self {
        Self {
            status: TerminalStatus::Cancelled,
            result: None,
            error: Some("run cancelled".into()),
            transcript: None,
            usage: None,
            agent_session_id: None,
        }
    }
}

/// Why a host call did not produce an answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// The run was cancelled while waiting.
    #[error("cancelled while waiting for the parent")]
    Cancelled,
    /// The connection to the parent is gone.
    #[error("the parent connection is closed")]
    Disconnected,
    /// This host does not offer the call.
    #[error("{0} is not available on this host")]
    Unsupported(&'static str),
}

/// What an executor may ask of its host (the parent, via the transport).
#[async_trait]
pub trait HostBridge: Send + Sync {
    /// Asks whether a gated action may proceed (protocol.md 4.2).
    async fn request_approval(&self, body: ApprovalBody) -> Result<bool, HostError>;
    /// Asks the parent to run a grandchild (protocol.md 4.3); returns the tool
    /// result JSON `{"success":bool,"result":...}`.
    async fn spawn_subagent(&self, body: serde_json::Value)
        -> Result<serde_json::Value, HostError>;
}

/// The event sink was closed: the parent is gone, stop producing.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("event sink closed: the parent connection is gone")]
pub struct SinkClosed;

#[derive(Debug, Clone)]
enum SinkTarget {
    /// Pre-serialized `event` frames, straight to the socket writer.
    Frames(mpsc::Sender<String>),
    /// Typed events, for in-process hosts and tests.
    Events(mpsc::Sender<AgentEvent>),
}

/// Where a run's events go, plus the optional host bridge.
#[derive(Clone)]
pub struct EventSink {
    target: SinkTarget,
    host: Option<Arc<dyn HostBridge>>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("target", &self.target)
            .field("has_host", &self.host.is_some())
            .finish()
    }
}

impl EventSink {
    /// A sink that serializes each event as a complete `event` frame.
    pub fn frames(tx: mpsc::Sender<String>, host: Option<Arc<dyn HostBridge>>) -> Self {
        Self {
            target: SinkTarget::Frames(tx),
            host,
        }
    }

    /// A sink that hands typed events to `tx` (in-process hosts, tests).
    pub fn events(tx: mpsc::Sender<AgentEvent>, host: Option<Arc<dyn HostBridge>>) -> Self {
        Self {
            target: SinkTarget::Events(tx),
            host,
        }
    }

    /// Emits one event, waiting while the consumer is behind (backpressure).
    pub async fn emit(&self, event: AgentEvent) -> Result<(), SinkClosed> {
        match &self.target {
            SinkTarget::Frames(tx) => tx
                .send(event_frame_text(&event))
                .await
                .map_err(|_| SinkClosed),
            SinkTarget::Events(tx) => tx.send(event).await.map_err(|_| SinkClosed),
        }
    }

    /// The host bridge, when the host offers one.
    pub fn host(&self) -> Option<&Arc<dyn HostBridge>> {
        self.host.as_ref()
    }
}

/// The wire text of an `event` frame, written without an intermediate value
/// (the same text as serializing `ChildFrame::Event`).
pub(crate) fn event_frame_text(event: &AgentEvent) -> String {
    // Sized for a short event up front: growing from empty is a few
    // reallocations per frame on the worker's hot path.
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(br#"{"kind":"event","event":"#);
    if event.write_json(&mut out).is_err() {
        return String::new();
    }
    out.push(b'}');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// Steering messages for the active run, admitted at the executor's safe points.
#[derive(Debug)]
pub struct SteeringInbox(mpsc::UnboundedReceiver<String>);

impl SteeringInbox {
    /// An inbox and the sender that feeds it.
    pub fn channel() -> (mpsc::UnboundedSender<String>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self(rx))
    }

    /// Waits for the next steering message; `None` once the sender is gone.
    pub async fn recv(&mut self) -> Option<String> {
        self.0.recv().await
    }

    /// Takes every message waiting now, without blocking.
    pub fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(m) = self.0.try_recv() {
            out.push(m);
        }
        out
    }
}

/// Everything a run gets besides its request.
#[derive(Debug)]
pub struct RunContext {
    /// Where events go.
    pub events: EventSink,
    /// Steering messages.
    pub steering: SteeringInbox,
    /// Tripped on cancel, supersede or disconnect.
    pub cancel: CancellationToken,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::ChildFrame;

    #[test]
    fn an_event_frame_is_written_as_the_frame_serializes() {
        for event in [
            AgentEvent::token("w "),
            AgentEvent::token("a \"quoted\"\nline"),
            AgentEvent::Complete { usage: None },
        ] {
            let text = event_frame_text(&event);
            assert_eq!(text, ChildFrame::Event { event }.to_text());
        }
    }
}
