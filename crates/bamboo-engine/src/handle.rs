//! [`ChildHandle`]: one child, as [`Engine::spawn`] returns it: its events,
//! its outcome, steering and cancelling.
//!
//! A handle reads the child's events from its parent's event log, from the
//! position the log had just before the handle started a run, so it sees
//! every event of that run however late it looks, and none of an earlier
//! run.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bamboo_domain::{AgentEvent, CompletionStatus, TokenUsage, WorktreeOutcome};
use futures::{Stream, StreamExt};

use crate::child::Child;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{EventStream, LoggedEvent, Since};
use crate::types::{CancelOutcome, ChildDetail, SendMessage, SendOutcome};

impl Engine {
    /// Creates `child` under its parent and, unless it is
    /// [`Child::pending`], queues its run. Returns at once with a handle to
    /// follow, steer, cancel or await it.
    ///
    /// Fails when the parent does not exist, the spawn depth cap is reached,
    /// the input is invalid (an empty assignment, a zero budget, an unknown
    /// placement) or the engine is shutting down.
    pub async fn spawn(&self, child: impl Into<Child>) -> Result<ChildHandle, EngineError> {
        let input = child.into().into_input();
        let parent_id = input.parent_id.clone();
        // The child does not exist yet: nothing of it precedes this point.
        let after = self.log_position(&parent_id);
        let detail = self.create_child(input).await?;
        Ok(ChildHandle::new(
            self.clone(),
            parent_id,
            detail.id,
            after,
            0,
        ))
    }

    /// A handle on an existing child of `parent_id` (created earlier, or
    /// by another engine before a restart). It follows the run live now,
    /// from this call on, else the next run started through it.
    pub async fn child(&self, parent_id: &str, child_id: &str) -> Result<ChildHandle, EngineError> {
        self.get_child(parent_id, child_id).await?;
        let handle = ChildHandle::new(self.clone(), parent_id.into(), child_id.into(), 0, 0);
        let (after, _) = handle.mark_point();
        handle.set_mark(after, 0);
        Ok(handle)
    }

    /// The last sequence number of `session`'s event log now.
    fn log_position(&self, session: &str) -> u64 {
        self.events(session, Since::Now)
            .position()
            .saturating_sub(1)
    }
}

/// One child of a parent session: follow its run with
/// [`events`](Self::events), await it with [`wait`](Self::wait), steer it
/// with [`send`](Self::send), stop it with [`cancel`](Self::cancel).
///
/// Cheap to clone; clones share what run they follow. A handle's events
/// and outcome are those of the last run started through it (by
/// [`Engine::spawn`], [`run`](Self::run), or a [`send`](Self::send) that
/// queued a run); a message that steers a running child keeps following
/// that run.
#[derive(Debug, Clone)]
pub struct ChildHandle {
    engine: Engine,
    parent_id: String,
    id: String,
    mark: Arc<Mutex<Mark>>,
}

/// Where the followed run begins in the parent's log.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Its events come after this sequence number.
    after: u64,
    /// Completions of earlier runs that still come after `after` (a run
    /// that was ending, or was interrupted, when this one was started).
    skip: u32,
}

impl ChildHandle {
    fn new(engine: Engine, parent_id: String, id: String, after: u64, skip: u32) -> Self {
        Self {
            engine,
            parent_id,
            id,
            mark: Arc::new(Mutex::new(Mark { after, skip })),
        }
    }

    /// The child's session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its parent's session id.
    pub fn parent_id(&self) -> &str {
        &self.parent_id
    }

    /// The followed run's events, in order and with none missing, however
    /// late this is called: `sub_agent_started`, its own events wrapped in
    /// `sub_agent_event`, heartbeats, its approval requests, and finally
    /// `sub_agent_completed`, after which the stream ends. Events of the
    /// child's own children are not included (follow them through their
    /// handles, or the whole tree with [`Engine::events`]). The stream also
    /// ends when the child is deleted or the engine shuts down.
    pub fn events(&self) -> ChildEvents {
        let mark = self.mark();
        ChildEvents {
            inner: self
                .engine
                .events(&self.parent_id, Since::After(mark.after)),
            id: self.id.clone(),
            skip: mark.skip,
            done: false,
        }
    }

    /// Waits for the followed run to end and returns how it ended. A
    /// pending child is awaited until it runs and ends. Fails only when no
    /// end can come: the child was deleted, or the engine shut down first.
    /// A parent's event log that loses events (its size cap, a full disk)
    /// still keeps the completion, so the end is seen.
    pub async fn wait(&self) -> Result<ChildOutcome, EngineError> {
        let mut events = self.events();
        while let Some(logged) = events.next().await {
            if let AgentEvent::SubAgentCompleted {
                status,
                error,
                result,
                usage,
                worktree,
                ..
            } = &*logged.event
            {
                return Ok(ChildOutcome {
                    id: self.id.clone(),
                    status: *status,
                    result: result.clone(),
                    error: error.clone(),
                    usage: usage.as_deref().copied(),
                    worktree: worktree.as_deref().cloned(),
                });
            }
        }
        if self.engine.inner.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        Err(EngineError::NotFound(self.id.clone()))
    }

    /// Sends the child a message: steers it when it is running (delivered
    /// at its next turn boundary), else appends it and runs the child again
    /// (see [`SendMessage`] to interrupt instead, or to append without a
    /// run). A run it queues becomes the one this handle follows.
    pub async fn send(&self, message: impl Into<SendMessage>) -> Result<SendOutcome, EngineError> {
        let (after, live) = self.mark_point();
        let out = self
            .engine
            .send_message(&self.parent_id, &self.id, message.into())
            .await?;
        match out {
            SendOutcome::Appended { run_queued: true } => self.set_mark(after, u32::from(live)),
            // The interrupted run's completion comes before the new run.
            SendOutcome::Interrupted { run_queued: true } => self.set_mark(after, 1),
            _ => {}
        }
        Ok(out)
    }

    /// Runs the child (a [`Child::pending`] one, or again after it ended),
    /// keeping its transcript, and returns once the run is queued. Fails
    /// with [`EngineError::AlreadyRunning`] while a run is live.
    pub async fn run(&self) -> Result<(), EngineError> {
        let (after, live) = self.mark_point();
        self.engine
            .run_child(&self.parent_id, &self.id, false)
            .await?;
        self.set_mark(after, u32::from(live));
        Ok(())
    }

    /// Cancels the child: a live run is stopped (its outcome is
    /// `cancelled`) and awaited; an idle child is marked cancelled.
    pub async fn cancel(&self) -> Result<CancelOutcome, EngineError> {
        self.engine.cancel_child(&self.parent_id, &self.id).await
    }

    /// The child as stored now, with its live state (status, transcript
    /// size, last result, usage, worker).
    pub async fn detail(&self) -> Result<ChildDetail, EngineError> {
        self.engine.get_child(&self.parent_id, &self.id).await
    }

    fn mark(&self) -> Mark {
        *self.mark.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_mark(&self, after: u64, skip: u32) {
        *self.mark.lock().unwrap_or_else(|p| p.into_inner()) = Mark { after, skip };
    }

    /// The parent log's position now, and whether a run of the child was
    /// live then (so its completion is still to come after it). A run
    /// ending while we look is looked at again: its completion may fall
    /// either side of the position.
    fn mark_point(&self) -> (u64, bool) {
        let runs = &self.engine.inner.reservations;
        loop {
            let before = runs.get(&self.id).is_some();
            let after = self.engine.log_position(&self.parent_id);
            let live = runs.get(&self.id).is_some();
            if live || !before {
                return (after, live);
            }
        }
    }
}

/// How a child's run ended, from [`ChildHandle::wait`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChildOutcome {
    /// The child's session id.
    pub id: String,
    /// How the run ended.
    pub status: CompletionStatus,
    /// The child's final answer, when it completed with one.
    pub result: Option<String>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// What the run used, when its executor counts it.
    pub usage: Option<TokenUsage>,
    /// The child's git worktree after the run, when it has one.
    pub worktree: Option<WorktreeOutcome>,
}

impl ChildOutcome {
    /// The run completed (rather than failed, timed out, was cancelled or
    /// had nothing to do).
    pub fn is_completed(&self) -> bool {
        self.status == CompletionStatus::Completed
    }
}

/// One child's run as a stream, from [`ChildHandle::events`].
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct ChildEvents {
    inner: EventStream,
    id: String,
    /// Earlier runs' completions still to pass over.
    skip: u32,
    done: bool,
}

impl ChildEvents {
    /// Whether the parent-log event `event` is this child's own.
    fn is_own(&self, event: &AgentEvent) -> bool {
        event.child_session_id() == Some(self.id.as_str())
    }
}

impl Stream for ChildEvents {
    type Item = LoggedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LoggedEvent>> {
        let this = &mut *self;
        while !this.done {
            let Some(logged) = futures::ready!(this.inner.poll_next_unpin(cx)) else {
                this.done = true;
                break;
            };
            // A loss in the parent's log may have taken this child's events:
            // said, not hidden.
            if matches!(*logged.event, AgentEvent::EventsTruncated { .. }) {
                return Poll::Ready(Some(logged));
            }
            if !this.is_own(&logged.event) {
                continue;
            }
            let completed = matches!(*logged.event, AgentEvent::SubAgentCompleted { .. });
            if this.skip > 0 {
                // An earlier run's tail.
                this.skip -= u32::from(completed);
                continue;
            }
            this.done = completed;
            return Poll::Ready(Some(logged));
        }
        Poll::Ready(None)
    }
}

impl From<&str> for SendMessage {
    fn from(text: &str) -> Self {
        SendMessage::new(text)
    }
}

impl From<String> for SendMessage {
    fn from(text: String) -> Self {
        SendMessage::new(text)
    }
}

impl SendMessage {
    /// Cancels a running run first, then runs the child with this message.
    pub fn interrupt(mut self) -> Self {
        self.interrupt = true;
        self
    }

    /// When the child is idle, appends the message without starting a run.
    pub fn no_run(mut self) -> Self {
        self.run = false;
        self
    }
}

impl LoggedEvent {
    /// The child's own event, when this is a `sub_agent_event` wrapping it.
    pub fn child_event(&self) -> Option<&AgentEvent> {
        match &*self.event {
            AgentEvent::SubAgentEvent { event, .. } => Some(event),
            _ => None,
        }
    }
}
