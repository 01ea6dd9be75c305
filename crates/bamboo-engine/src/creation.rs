//! A child created with `auto_run` while a slot is free is stored while its
//! run already starts (E2's fast path): the durable create (a data sync and a
//! directory sync) overlaps leasing the worker and sending it the run, so a
//! warm run pays for its disk once, at its end, instead of twice.
//!
//! What keeps this safe: the pump reads no frame of the worker until the
//! child is stored ([`Creation::wait`] sits between sending the run and
//! pumping its frames, and `sub_agent_started` waits for it too), so no
//! child event, approval, steering answer or nested spawn is seen for a
//! child that may not exist; and the final status
//! is written only after the create (the run waits again before `finish`). If
//! the create fails, the run is stopped unread, its completion says why, and
//! `create_child` returns the store's error.

use std::sync::Arc;

use bamboo_domain::Session;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::store::{SessionStore, StoreError};

/// The store's answer to a create, for the caller of `create_child`.
pub(crate) type Stored = oneshot::Receiver<Result<(), StoreError>>;

/// A create in flight beside its run.
#[derive(Debug)]
pub(crate) struct Creation {
    state: State,
}

#[derive(Debug)]
enum State {
    Storing {
        task: JoinHandle<Result<(), StoreError>>,
        tell: oneshot::Sender<Result<(), StoreError>>,
    },
    Done(Result<(), String>),
}

impl Creation {
    /// Starts storing `session` at once, in its own task (so it finishes even
    /// if nobody waits); the returned receiver gets the store's answer.
    pub(crate) fn start(store: Arc<dyn SessionStore>, session: Session) -> (Self, Stored) {
        let task = tokio::spawn(async move { store.create(&session).await });
        let (tell, told) = oneshot::channel();
        let state = State::Storing { task, tell };
        (Self { state }, told)
    }

    /// A child stored before its run began (a queued run).
    pub(crate) fn stored() -> Self {
        Self {
            state: State::Done(Ok(())),
        }
    }

    /// Whether the child is known to be stored (without waiting).
    pub(crate) fn is_stored(&self) -> bool {
        matches!(self.state, State::Done(Ok(())))
    }

    /// Waits until the child is stored. `Err` says why it could not be; the
    /// answer is kept, so waiting again is free.
    pub(crate) async fn wait(&mut self) -> Result<(), String> {
        if let State::Storing { task, .. } = &mut self.state {
            let outcome = match task.await {
                Ok(r) => r,
                Err(join) => Err(StoreError::Io {
                    path: "(session create)".into(),
                    source: std::io::Error::other(join.to_string()),
                }),
            };
            let kept = outcome
                .as_ref()
                .map(|_| ())
                .map_err(|e| format!("the child could not be stored: {e}"));
            let done = std::mem::replace(&mut self.state, State::Done(kept));
            if let State::Storing { tell, .. } = done {
                // The caller may have gone; the run goes on either way.
                let _ = tell.send(outcome);
            }
        }
        match &self.state {
            State::Done(r) => r.clone(),
            State::Storing { .. } => Err("the child's create did not finish".into()),
        }
    }
}
