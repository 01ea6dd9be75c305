//! Approval broker (E17). Order: a wired policy answers at once; otherwise the
//! request is surfaced to a human as `child_approval_requested` and answered
//! through [`crate::Engine::answer_approval`]; an unanswered request is denied
//! after the timeout; with no policy answer and no human, deny (fail closed).
//!
//! The broker runs on the approval's own task, never on the event pump, so a
//! slow decision cannot stall forwarding.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::AgentEvent;
use tokio::sync::oneshot;

/// A child's request for approval, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The parent session.
    pub parent_session_id: String,
    /// The asking child.
    pub child_session_id: String,
    /// The tool that wants to act.
    pub tool_name: String,
    /// Kind of permission.
    pub permission: String,
    /// What the action touches.
    pub resource: String,
    /// A question for a human.
    pub question: String,
}

/// An automatic decider. `None` means "no opinion": ask a human.
#[async_trait]
pub trait ApprovalPolicy: Send + Sync + fmt::Debug {
    /// Decides at once, or defers with `None`.
    async fn decide(&self, request: &ApprovalRequest) -> Option<bool>;
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The wired policy.
    Policy,
    /// A human through the engine API.
    Human,
    /// Nobody answered in time: denied.
    Timeout,
    /// No policy answer and no human approver: denied.
    FailClosed,
}

/// The outcome of one approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action may proceed.
    pub approved: bool,
    /// Who decided.
    pub by: DecidedBy,
}

/// Answering an approval failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    /// No pending request has this id (answered, timed out, or never existed).
    #[error(
        "no pending approval with id {0}: it was already answered, timed out, or its run ended"
    )]
    Unknown(String),
}

/// How approvals are decided.
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    /// Automatic decider, consulted first.
    pub policy: Option<Arc<dyn ApprovalPolicy>>,
    /// Whether a human may answer through the API.
    pub human: bool,
    /// How long a decision may take before it is denied (reference: 300 s).
    pub timeout: Duration,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            policy: None,
            human: true,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Decides approvals and tracks the ones waiting for a human.
#[derive(Debug)]
pub struct ApprovalBroker {
    config: ApprovalConfig,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>,
}

/// Removes a pending entry however its wait ends (answer, timeout, abort).
struct PendingGuard {
    id: String,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ApprovalBroker {
    /// A broker with `config`.
    pub fn new(config: ApprovalConfig) -> Self {
        Self {
            config,
            pending: Arc::default(),
        }
    }

    /// Decides one request. `surface` publishes the human-facing event.
    pub async fn decide(
        &self,
        request: &ApprovalRequest,
        surface: impl FnOnce(AgentEvent),
    ) -> Decision {
        let timeout = self.config.timeout;
        if let Some(policy) = &self.config.policy {
            match tokio::time::timeout(timeout, policy.decide(request)).await {
                Ok(Some(approved)) => return decision(approved, DecidedBy::Policy),
                Ok(None) => {}
                Err(_) => return decision(false, DecidedBy::Timeout),
            }
        }
        if !self.config.human {
            return decision(false, DecidedBy::FailClosed);
        }
        // Our own unguessable id: never trust a child's id to be unique.
        let id = format!("ap-{}", uuid::Uuid::new_v4());
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), tx);
        let _guard = PendingGuard {
            id: id.clone(),
            pending: self.pending.clone(),
        };
        surface(AgentEvent::ChildApprovalRequested {
            child_session_id: request.child_session_id.clone(),
            request_id: id,
            tool_name: request.tool_name.clone(),
            permission: request.permission.clone(),
            resource: request.resource.clone(),
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(approved)) => decision(approved, DecidedBy::Human),
            _ => decision(false, DecidedBy::Timeout),
        }
    }

    /// Answers a pending request by the id of its `child_approval_requested` event.
    pub fn answer(&self, request_id: &str, approved: bool) -> Result<(), ApprovalError> {
        let tx = lock(&self.pending).remove(request_id);
        match tx.map(|tx| tx.send(approved)) {
            Some(Ok(())) => Ok(()),
            _ => Err(ApprovalError::Unknown(request_id.to_owned())),
        }
    }

    /// Ids of requests waiting for a human.
    pub fn pending_ids(&self) -> Vec<String> {
        lock(&self.pending).keys().cloned().collect()
    }
}

fn decision(approved: bool, by: DecidedBy) -> Decision {
    Decision { approved, by }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Option<bool>);

    #[async_trait]
    impl ApprovalPolicy for Fixed {
        async fn decide(&self, _: &ApprovalRequest) -> Option<bool> {
            self.0
        }
    }

    #[derive(Debug)]
    struct Hang;

    #[async_trait]
    impl ApprovalPolicy for Hang {
        async fn decide(&self, _: &ApprovalRequest) -> Option<bool> {
            std::future::pending().await
        }
    }

    fn req() -> ApprovalRequest {
        ApprovalRequest {
            parent_session_id: "p".into(),
            child_session_id: "c".into(),
            tool_name: "bash".into(),
            permission: "execute".into(),
            resource: "ls".into(),
            question: "ok?".into(),
        }
    }

    fn broker(
        policy: Option<Arc<dyn ApprovalPolicy>>,
        human: bool,
        ms: u64,
    ) -> Arc<ApprovalBroker> {
        Arc::new(ApprovalBroker::new(ApprovalConfig {
            policy,
            human,
            timeout: Duration::from_millis(ms),
        }))
    }

    #[tokio::test]
    async fn policy_answers_first_and_no_human_is_asked() {
        let b = broker(Some(Arc::new(Fixed(Some(true)))), true, 5_000);
        let d = b
            .decide(&req(), |_| panic!("human must not be asked"))
            .await;
        assert_eq!(
            d,
            Decision {
                approved: true,
                by: DecidedBy::Policy
            }
        );
        let b = broker(Some(Arc::new(Fixed(Some(false)))), true, 5_000);
        assert!(!b.decide(&req(), |_| panic!()).await.approved);
    }

    #[tokio::test]
    async fn deferring_policy_falls_through_to_a_human_answer() {
        let b = broker(Some(Arc::new(Fixed(None))), true, 5_000);
        let (tx, rx) = oneshot::channel();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            b2.decide(&req(), move |ev| {
                let _ = tx.send(ev);
            })
            .await
        });
        let ev = rx.await.unwrap();
        let AgentEvent::ChildApprovalRequested {
            request_id,
            tool_name,
            ..
        } = ev
        else {
            panic!("expected child_approval_requested, got {ev:?}");
        };
        assert_eq!(tool_name, "bash");
        assert!(request_id.starts_with("ap-"));
        b.answer(&request_id, true).unwrap();
        assert_eq!(
            waiter.await.unwrap(),
            Decision {
                approved: true,
                by: DecidedBy::Human
            }
        );
        assert_eq!(
            b.answer(&request_id, true),
            Err(ApprovalError::Unknown(request_id))
        );
        assert!(b.pending_ids().is_empty());
    }

    #[tokio::test]
    async fn unanswered_request_is_denied_after_the_timeout() {
        let b = broker(None, true, 60);
        let d = b.decide(&req(), |_| {}).await;
        assert_eq!(
            d,
            Decision {
                approved: false,
                by: DecidedBy::Timeout
            }
        );
        assert!(b.pending_ids().is_empty(), "timed-out entry is cleaned up");
    }

    #[tokio::test]
    async fn slow_policy_is_denied_after_the_timeout() {
        let b = broker(Some(Arc::new(Hang)), true, 60);
        let d = b.decide(&req(), |_| panic!()).await;
        assert_eq!(
            d,
            Decision {
                approved: false,
                by: DecidedBy::Timeout
            }
        );
    }

    #[tokio::test]
    async fn no_policy_and_no_human_fails_closed_at_once() {
        let b = broker(None, false, 60_000);
        let t0 = std::time::Instant::now();
        let d = b.decide(&req(), |_| panic!()).await;
        assert_eq!(
            d,
            Decision {
                approved: false,
                by: DecidedBy::FailClosed
            }
        );
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
