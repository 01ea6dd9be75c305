//! A child created with `auto_run` while a slot is free is stored while its
//! run already starts: the durable create (the store's sync)
//! overlaps leasing the worker and sending it the run, so a warm run waits on
//! the disk once, at its end, where it would otherwise wait twice.
//!
//! What keeps this safe: the pump reads no frame of the worker until the
//! child is stored ([`Creation::wait`] sits between sending the run and
//! pumping its frames, and `sub_agent_started` waits for it too), so no
//! child event, approval, steering answer or nested spawn is seen for a
//! child that may not exist; and the final status
//! is written only after the create (the run waits again before `finish`). If
//! the create fails, the run is stopped unread, its completion says why, and
//! `create_child` returns the store's error.
// Behaviours: E2.

use std::sync::Arc;

use bamboo_domain::{AgentEvent, Session};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::events::Fanout;
use crate::store::{SessionStore, StoreError};

/// The store's answer to a create, for the caller of `create_child`.
pub(crate) type Stored = oneshot::Receiver<Result<(), StoreError>>;

/// A create in flight beside its run, and the run's `sub_agent_started`,
/// announced once the child is stored (a subscriber that sees it can look
/// the child up).
#[derive(Debug)]
pub(crate) struct Creation {
    state: State,
    /// Boxed: the event is large and a `Creation` travels inside the run's
    /// start.
    announce: Option<Box<AgentEvent>>,
}

#[derive(Debug)]
enum State {
    /// The create's task: why it failed, if it did.
    Storing(JoinHandle<Result<(), NotStored>>),
    Done(Result<(), NotStored>),
}

/// Why a child's create did not store it; kept, so every wait sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NotStored {
    /// The store refused the create; the caller of the create got the
    /// error itself, the run keeps what it said.
    #[error("the child could not be stored: {reason}")]
    Refused {
        /// The store's error, as it reads.
        reason: String,
    },
    /// The create's task ended without an answer (a panic, or shutdown).
    #[error("the child's create failed: {0}")]
    Lost(Arc<tokio::task::JoinError>),
}

impl Creation {
    /// Starts storing `session` at once, in its own task: it finishes even if
    /// nobody waits, and the returned receiver gets the store's answer as
    /// soon as there is one (whatever the run is doing).
    pub(crate) fn start(
        store: Arc<dyn SessionStore>,
        session: Session,
        announce: AgentEvent,
    ) -> (Self, Stored) {
        let (tell, told) = oneshot::channel();
        let task = tokio::spawn(async move {
            let outcome = store.create(&session).await;
            // The caller may have gone; the run goes on either way.
            match outcome {
                Ok(()) => {
                    let _ = tell.send(Ok(()));
                    Ok(())
                }
                Err(e) => {
                    let reason = e.to_string();
                    let _ = tell.send(Err(e));
                    Err(NotStored::Refused { reason })
                }
            }
        });
        let creation = Self {
            state: State::Storing(task),
            announce: Some(Box::new(announce)),
        };
        (creation, told)
    }

    /// A child stored before its run began (a queued run).
    pub(crate) fn stored(announce: AgentEvent) -> Self {
        Self {
            state: State::Done(Ok(())),
            announce: Some(Box::new(announce)),
        }
    }

    /// Whether the child is known to be stored (without waiting).
    pub(crate) fn is_stored(&self) -> bool {
        matches!(self.state, State::Done(Ok(())))
    }

    /// Waits until the child is stored, then announces it on `fanout` (once).
    /// `Err` says why it could not be stored; the answer is kept, so waiting
    /// again is free.
    pub(crate) async fn wait(&mut self, fanout: &Fanout) -> Result<(), NotStored> {
        let kept = match &mut self.state {
            State::Storing(task) => {
                let kept = task
                    .await
                    .unwrap_or_else(|join| Err(NotStored::Lost(Arc::new(join))));
                self.state = State::Done(kept.clone());
                kept
            }
            State::Done(kept) => kept.clone(),
        };
        if kept.is_ok() {
            if let Some(event) = self.announce.take() {
                fanout.publish(*event);
            }
        }
        kept
    }
}
