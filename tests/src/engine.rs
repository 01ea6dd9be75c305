//! Shared helpers of the engine end-to-end tests: an engine over real worker
//! processes, and waits on events (never sleeps).

use std::path::Path;
use std::time::Duration;

use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_engine::CredentialResolver;
use bamboo_engine::EventStream;
use bamboo_engine::{CreateChild, Engine, EngineBuilder, Timeouts};
use bamboo_subagent::spec::{ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;
use futures::StreamExt;

/// Generous bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(30);

/// A builder over the real worker binary with the echo executor.
pub fn builder(dir: &Path, max_running: usize) -> EngineBuilder {
    Engine::builder()
        .data_dir(dir)
        .worker_program(crate::worker_bin())
        .executor(ExecutorSpec::Echo)
        .max_running(max_running)
        .timeouts(Timeouts {
            cancel_grace: Duration::from_secs(3),
            ..Timeouts::default()
        })
}

pub async fn engine(dir: &Path, max_running: usize) -> Engine {
    builder(dir, max_running)
        .build()
        .await
        .expect("engine builds")
}

/// A credential for a scripted model server: its address and a test key.
#[derive(Debug, Clone)]
pub struct ModelKey {
    /// The provider it is for; `None` hands it to every provider.
    provider: Option<&'static str>,
    key: &'static str,
    base_url: String,
}

impl ModelKey {
    /// The key `sk-test-key` for every provider, at `base_url`.
    pub fn any(base_url: &str) -> Self {
        Self {
            provider: None,
            key: "sk-test-key",
            base_url: base_url.to_owned(),
        }
    }

    /// `key` for `provider` only (also its provider type), at `base_url`.
    pub fn only(provider: &'static str, key: &'static str, base_url: &str) -> Self {
        Self {
            provider: Some(provider),
            key,
            base_url: base_url.to_owned(),
        }
    }
}

impl CredentialResolver for ModelKey {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        if self.provider.is_some_and(|only| only != provider) {
            return None;
        }
        Some(ProviderCredential {
            provider: provider.into(),
            api_key: Secret::new(self.key),
            base_url: Some(self.base_url.clone()),
            provider_type: self.provider.map(str::to_owned),
        })
    }
}

/// An engine whose children run the `bamboo_runtime` executor against the
/// scripted model server at `base_url`, asking no approvals.
pub async fn llm_engine(dir: &Path, base_url: &str) -> Engine {
    builder(dir, 2)
        .executor(ExecutorSpec::BambooRuntime)
        .credentials(std::sync::Arc::new(ModelKey::any(base_url)))
        .enforce_permissions(false)
        .build()
        .await
        .expect("engine builds")
}

/// Creates a root and one child with `assignment` (not yet run).
pub async fn root_and_child(engine: &Engine, assignment: &str) -> (String, String) {
    let root = engine.create_root("root", None).await.expect("root");
    let child = engine
        .create_child(CreateChild::new(&root.id, assignment))
        .await
        .expect("child");
    (root.id, child.id)
}

/// Runs `child` of `root` and waits for its report.
pub async fn run_report(engine: &Engine, root: &str, child: &str) -> bamboo_engine::RunReport {
    let ticket = engine
        .run_child(root, child, true)
        .await
        .expect("run_child");
    ticket.await.expect("the run reports")
}

/// Runs `assignment` as a new child and waits until its worker is known:
/// `(the root's events from before the run, root id, child id, worker pid)`.
pub async fn start_child(engine: &Engine, assignment: &str) -> (EventStream, String, String, u32) {
    let (root, child) = root_and_child(engine, assignment).await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine
        .run_child(&root, &child, true)
        .await
        .expect("run_child");
    first_event(&mut events, "sub_agent_started", |e| {
        matches!(e, AgentEvent::SubAgentStarted { .. })
    })
    .await;
    let pid = loop {
        let detail = engine.get_child(&root, &child).await.expect("get_child");
        if let Some(pid) = detail.worker_pid {
            break pid;
        }
        tokio::task::yield_now().await;
    };
    (events, root, child, pid)
}

/// Reads the next event of a session's stream (the stream is lossless).
#[allow(async_fn_in_trait)]
pub trait NextEvent {
    /// The next event; `None` when the stream ended.
    async fn recv(&mut self) -> Option<AgentEvent>;
}

impl NextEvent for EventStream {
    async fn recv(&mut self) -> Option<AgentEvent> {
        self.next()
            .await
            .map(|logged| std::sync::Arc::unwrap_or_clone(logged.event))
    }
}

/// Waits for the `sub_agent_completed` of `child` on a parent stream.
pub async fn completion(rx: &mut EventStream, child: &str) -> (CompletionStatus, Option<String>) {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(AgentEvent::SubAgentCompleted {
                    child_session_id,
                    status,
                    error,
                    ..
                }) if child_session_id == child => return (status, error),
                Some(_) => {}
                None => panic!("stream ended before {child} completed"),
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .unwrap_or_else(|_| panic!("{child} did not complete within {SOON:?}"))
}

/// Waits for the first event matching `pred` on a stream.
pub async fn first_event(
    rx: &mut EventStream,
    what: &str,
    pred: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => {}
                None => panic!("stream ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {SOON:?}"))
}

/// The text of the tokens a child streamed, from its wrapped events.
pub fn token_text(ev: &AgentEvent) -> Option<&str> {
    match ev {
        AgentEvent::SubAgentEvent { event, .. } => match event.as_ref() {
            AgentEvent::Token { content } => Some(content),
            _ => None,
        },
        _ => None,
    }
}

/// Runs a child that waits for one steering message (`wait __steer`), sends
/// it `text` once its first token shows the run is live on its worker,
/// checks the message went in-band and the run completed, and returns the
/// child's stored session.
pub async fn steer_a_live_child(engine: &Engine, text: &str) -> bamboo_domain::Session {
    let (root, child) = root_and_child(engine, "wait __steer").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine
        .run_child(&root, &child, true)
        .await
        .expect("the run is queued");
    first_event(&mut events, "first token", |e| {
        token_text(e) == Some("wait ")
    })
    .await;
    let out = engine
        .send_message(&root, &child, bamboo_engine::SendMessage::new(text))
        .await
        .expect("the message is sent");
    assert_eq!(out, bamboo_engine::SendOutcome::Steered { in_band: true });
    assert_eq!(
        completion(&mut events, &child).await.0,
        CompletionStatus::Completed
    );
    engine
        .session(&child)
        .await
        .expect("the child is readable")
        .expect("the child is stored")
}
