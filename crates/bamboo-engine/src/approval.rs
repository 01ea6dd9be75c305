//! Approval broker. Order: a wired policy answers at once; otherwise the
//! request is surfaced to a human as `child_approval_requested` and answered
//! through [`crate::Engine::answer_approval`]; an unanswered request is denied
//! after the timeout; with no policy answer and no human, deny (fail closed).
//!
//! Requests waiting for a human are state, not only an event: the broker's
//! board lists them ([`crate::Engine::pending_approvals`]) and feeds every
//! watcher ([`crate::Engine::approval_requests`]) without loss. An answer to
//! a request that is no longer open says why (expired, answered, withdrawn).
//!
//! Ids: the worker asks with its own `sa-<uuid>` and gets its answer under
//! that id; people see and answer an engine-made `ap-<uuid>` (never the
//! child's id), logged as `child_approval_requested` to every ancestor's
//! event log. The board remembers the last 4096 closed ids, so a late answer
//! gets the right typed error. Defaults: a 300 s timeout, then deny; and
//! `enforce_permissions` on, so cli and llm children ask unless the embedder
//! opts out. A spec with `no_human_approver` gets neither a policy nor a
//! person.
//!
//! The broker runs on the approval's own task, never on the event pump, so a
//! slow decision cannot stall forwarding.
// Behaviours: E17.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::AgentEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// A child's request for approval, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The parent session.
    pub parent_session_id: String,
    /// The asking child.
    pub child_session_id: String,
    /// The child's parent, grandparent, ..., root.
    pub ancestry: Vec<String>,
    /// The tool that wants to act.
    pub tool_name: String,
    /// Kind of permission.
    pub permission: String,
    /// What the action touches: for `cli_adapter`, the exact command.
    pub resource: String,
    /// A question for a human.
    pub question: String,
}

/// A request waiting for a human's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingApproval {
    /// The id to answer with (`ap-<uuid>`).
    pub id: String,
    /// The asking child.
    pub child_session_id: String,
    /// The child's parent, grandparent, ..., root.
    pub ancestry: Vec<String>,
    /// The tool that wants to act.
    pub tool_name: String,
    /// Kind of permission.
    pub permission: String,
    /// What the action touches: for `cli_adapter`, the exact command line.
    pub resource: String,
    /// The child's question.
    pub question: String,
    /// When it was asked.
    pub created_at: DateTime<Utc>,
    /// When it is denied unless answered.
    pub expires_at: DateTime<Utc>,
}

impl PendingApproval {
    /// Whether the request comes from a descendant of `session`.
    pub fn is_under(&self, session: &str) -> bool {
        self.ancestry.iter().any(|a| a == session)
    }
}

/// An automatic decider. `None` means "no opinion": ask a human.
#[async_trait]
pub trait ApprovalPolicy: Send + Sync + fmt::Debug {
    /// Decides at once, or defers with `None`.
    async fn decide(&self, request: &ApprovalRequest) -> Option<bool>;

    /// Gated actions a run of `child_session_id` on `assignment` may take
    /// without asking: the run carries them to its worker, which then sends
    /// no request for exactly these (one round trip less per run). Only
    /// what [`ApprovalPolicy::decide`] would approve at once belongs here.
    /// Default: none, every gated action asks.
    fn approved_ahead(&self, child_session_id: &str, assignment: &str) -> Vec<Approved> {
        let _ = (child_session_id, assignment);
        Vec::new()
    }
}

/// A gated action approved before its run (see
/// [`ApprovalPolicy::approved_ahead`]).
pub use bamboo_subagent::frames::Approved;

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
    /// The [`crate::ChildApprovalReviewer`] of a bypassed ancestor below the root.
    Reviewer,
}

/// The outcome of one approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action may proceed.
    pub approved: bool,
    /// Who decided.
    pub by: DecidedBy,
}

/// Answering an approval failed. None of these is fatal: the request is
/// simply no longer open.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    /// No request ever had this id (or it is too old to remember).
    #[error("no approval request has id {0}: check the id of its child_approval_requested event")]
    Unknown(String),
    /// The request waited past its timeout and was denied.
    #[error("approval {0} expired before it was answered and was denied: answer sooner, or raise the engine's approval timeout")]
    Expired(String),
    /// The request was answered already.
    #[error("approval {0} was already answered")]
    Answered(String),
    /// The run that asked ended (cancelled, finished or failed) first.
    #[error("approval {0} was withdrawn: the run that asked for it has ended")]
    Withdrawn(String),
}

/// Reviews a descendant's gated action on behalf of a bypassed level (a
/// policy or a model check). `None`: no opinion, pass the request up.
#[async_trait]
pub trait ChildApprovalReviewer: Send + Sync + fmt::Debug {
    /// Decides `request` for the bypassed session `level`.
    async fn review(&self, level: &str, request: &ApprovalRequest) -> Option<bool>;
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
    /// Answers for bypassed levels below the root (approvals up the chain).
    pub reviewer: Option<Arc<dyn ChildApprovalReviewer>>,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            policy: None,
            human: true,
            timeout: Duration::from_secs(300),
            reviewer: None,
        }
    }
}

/// How a request stopped being open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Answered,
    Expired,
    Withdrawn,
}

/// Closed ids remembered to explain a late answer.
const REMEMBER_CLOSED: usize = 4096;

#[derive(Debug, Default)]
struct Board {
    open: HashMap<String, (Arc<PendingApproval>, oneshot::Sender<bool>)>,
    closed: HashMap<String, Closed>,
    closed_order: VecDeque<String>,
    watchers: Vec<(Option<String>, mpsc::UnboundedSender<PendingApproval>)>,
    shut: bool,
}

impl Board {
    fn close(&mut self, id: &str, how: Closed) -> Option<oneshot::Sender<bool>> {
        let (_, tx) = self.open.remove(id)?;
        self.closed.insert(id.to_owned(), how);
        self.closed_order.push_back(id.to_owned());
        if self.closed_order.len() > REMEMBER_CLOSED {
            if let Some(old) = self.closed_order.pop_front() {
                self.closed.remove(&old);
            }
        }
        Some(tx)
    }

    fn announce(&mut self, p: &PendingApproval) {
        self.watchers.retain(|(under, tx)| {
            let wanted = under.as_deref().is_none_or(|u| p.is_under(u));
            !wanted || tx.send(p.clone()).is_ok()
        });
    }
}

/// Decides approvals and tracks the ones waiting for a human.
#[derive(Debug)]
pub(crate) struct ApprovalBroker {
    config: ApprovalConfig,
    board: Arc<Mutex<Board>>,
}

/// Closes a request as withdrawn however its wait ends early (the run's
/// task aborted); a no-op once it was answered or expired.
struct OpenGuard {
    id: String,
    board: Arc<Mutex<Board>>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        lock(&self.board).close(&self.id, Closed::Withdrawn);
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
            board: Arc::default(),
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
        let (pending, rx) = self.open(request, timeout);
        let _guard = OpenGuard {
            id: pending.id.clone(),
            board: self.board.clone(),
        };
        surface(AgentEvent::ChildApprovalRequested {
            child_session_id: request.child_session_id.clone(),
            request_id: pending.id.clone(),
            tool_name: request.tool_name.clone(),
            permission: request.permission.clone(),
            resource: request.resource.clone(),
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(approved)) => decision(approved, DecidedBy::Human),
            _ => {
                lock(&self.board).close(&pending.id, Closed::Expired);
                decision(false, DecidedBy::Timeout)
            }
        }
    }

    /// Puts a request on the board and tells the watchers.
    fn open(
        &self,
        request: &ApprovalRequest,
        timeout: Duration,
    ) -> (Arc<PendingApproval>, oneshot::Receiver<bool>) {
        let now = Utc::now();
        let pending = Arc::new(PendingApproval {
            // Our own unguessable id: never trust a child's id to be unique.
            id: format!("ap-{}", uuid::Uuid::new_v4()),
            child_session_id: request.child_session_id.clone(),
            ancestry: request.ancestry.clone(),
            tool_name: request.tool_name.clone(),
            permission: request.permission.clone(),
            resource: request.resource.clone(),
            question: request.question.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX),
        });
        let (tx, rx) = oneshot::channel();
        let mut board = lock(&self.board);
        board.announce(&pending);
        board.open.insert(pending.id.clone(), (pending.clone(), tx));
        (pending, rx)
    }

    /// Answers a pending request by the id of its `child_approval_requested` event.
    pub fn answer(&self, request_id: &str, approved: bool) -> Result<(), ApprovalError> {
        let mut board = lock(&self.board);
        let id = request_id.to_owned();
        match board.close(request_id, Closed::Answered) {
            Some(tx) => tx.send(approved).map_err(|_| ApprovalError::Withdrawn(id)),
            None => Err(match board.closed.get(request_id) {
                Some(Closed::Answered) => ApprovalError::Answered(id),
                Some(Closed::Expired) => ApprovalError::Expired(id),
                Some(Closed::Withdrawn) => ApprovalError::Withdrawn(id),
                None => ApprovalError::Unknown(id),
            }),
        }
    }

    /// Requests waiting for a human (all, or those of descendants of
    /// `under`), oldest first.
    pub fn pending(&self, under: Option<&str>) -> Vec<PendingApproval> {
        open_under(&lock(&self.board), under)
    }

    /// Every request open now, then each new one (all, or under `under`).
    pub fn watch(&self, under: Option<&str>) -> ApprovalStream {
        let (tx, rx) = mpsc::unbounded_channel();
        // One lock for the listing and the registration: no request can
        // slip between them.
        let mut board = lock(&self.board);
        for p in open_under(&board, under) {
            let _ = tx.send(p);
        }
        if !board.shut {
            board.watchers.push((under.map(str::to_owned), tx));
        }
        ApprovalStream { rx }
    }

    /// Ends every watcher's stream (engine shutdown).
    pub fn close(&self) {
        let mut board = lock(&self.board);
        board.shut = true;
        board.watchers.clear();
    }

    /// Ids of requests waiting for a human.
    #[cfg(test)]
    pub fn pending_ids(&self) -> Vec<String> {
        lock(&self.board).open.keys().cloned().collect()
    }
}

/// Approval requests as they arrive, from [`crate::Engine::approval_requests`].
/// Lossless: it buffers what its reader has not taken yet (requests are few).
#[derive(Debug)]
pub struct ApprovalStream {
    rx: mpsc::UnboundedReceiver<PendingApproval>,
}

impl futures::Stream for ApprovalStream {
    type Item = PendingApproval;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PendingApproval>> {
        self.rx.poll_recv(cx)
    }
}

fn open_under(board: &Board, under: Option<&str>) -> Vec<PendingApproval> {
    let mut all: Vec<PendingApproval> = board
        .open
        .values()
        .map(|(p, _)| p)
        .filter(|p| under.is_none_or(|u| p.is_under(u)))
        .map(|p| (**p).clone())
        .collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    all
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
            ancestry: vec!["p".into(), "root".into()],
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
            reviewer: None,
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
            Err(ApprovalError::Answered(request_id))
        );
        assert!(b.pending_ids().is_empty());
        assert_eq!(
            b.answer("ap-never", true),
            Err(ApprovalError::Unknown("ap-never".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_request_is_denied_after_the_timeout_and_a_late_answer_says_expired() {
        let b = broker(None, true, 60_000);
        let (tx, rx) = oneshot::channel();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            b2.decide(&req(), move |ev| {
                let _ = tx.send(ev);
            })
            .await
        });
        let Ok(AgentEvent::ChildApprovalRequested { request_id, .. }) = rx.await else {
            panic!("no request surfaced");
        };
        let listed = b.pending(Some("root"));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, request_id);
        assert_eq!(listed[0].ancestry, ["p", "root"]);
        assert_eq!(
            (listed[0].expires_at - listed[0].created_at).num_seconds(),
            60
        );
        assert!(b.pending(Some("elsewhere")).is_empty());
        let d = waiter.await.unwrap();
        assert_eq!(
            d,
            Decision {
                approved: false,
                by: DecidedBy::Timeout
            }
        );
        assert!(b.pending_ids().is_empty(), "timed-out entry is cleaned up");
        assert_eq!(
            b.answer(&request_id, true),
            Err(ApprovalError::Expired(request_id))
        );
    }

    #[tokio::test]
    async fn a_watcher_gets_open_requests_then_new_ones_in_scope_only() {
        use futures::StreamExt;
        let b = broker(None, true, 60_000);
        let first = b.clone();
        let t1 = tokio::spawn(async move { first.decide(&req(), |_| {}).await });
        while b.pending_ids().is_empty() {
            tokio::task::yield_now().await;
        }
        let mut all = b.watch(None);
        let mut mine = b.watch(Some("root"));
        let mut other = b.watch(Some("elsewhere"));
        let second = b.clone();
        let t2 = tokio::spawn(async move { second.decide(&req(), |_| {}).await });
        let (a1, a2) = (all.next().await.unwrap(), all.next().await.unwrap());
        let (m1, m2) = (mine.next().await.unwrap(), mine.next().await.unwrap());
        assert_eq!((&a1.id, &a2.id), (&m1.id, &m2.id));
        assert_ne!(a1.id, a2.id);
        b.answer(&a1.id, true).unwrap();
        b.answer(&a2.id, false).unwrap();
        assert!(t1.await.unwrap().approved);
        assert!(!t2.await.unwrap().approved);
        b.close();
        assert!(
            other.next().await.is_none(),
            "nothing out of scope; ends at close"
        );
    }

    #[tokio::test]
    async fn a_request_whose_run_ended_is_withdrawn() {
        let b = broker(None, true, 60_000);
        let (tx, rx) = oneshot::channel();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            b2.decide(&req(), move |ev| {
                let _ = tx.send(ev);
            })
            .await
        });
        let Ok(AgentEvent::ChildApprovalRequested { request_id, .. }) = rx.await else {
            panic!("no request surfaced");
        };
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(
            b.answer(&request_id, true),
            Err(ApprovalError::Withdrawn(request_id))
        );
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
