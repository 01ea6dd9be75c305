//! Lifecycle points that need no worker process: heartbeats from the moment a
//! run is reserved (E8, on tokio's paused clock) and a completion with status
//! error for a failure before the run (E3). The launcher that never finishes
//! and the store that fails a load stand in for what cannot be staged with a
//! real worker at an exact instant.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bamboo_domain::{AgentEvent, CompletionStatus, Session};
use bamboo_engine::launch::{LaunchError, Launcher, Worker};
use bamboo_engine::store::{FileStore, Mutator, SessionStore, StoreError};
use bamboo_engine::{async_trait, CreateChild, Engine, Since};
use bamboo_subagent::spec::ProvisionSpec;
use futures::StreamExt;

/// A launcher whose workers never come up: the run stays reserved.
#[derive(Debug)]
struct NeverUp;

#[async_trait]
impl Launcher for NeverUp {
    async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn e8_heartbeats_start_when_the_run_is_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .data_dir(dir.path())
        .launcher(Arc::new(NeverUp))
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let child = engine
        .create_child(CreateChild::new(&root.id, "x"))
        .await
        .unwrap();
    let mut events = engine.events(&root.id, Since::Now);
    let _ticket = engine.run_child(&root.id, &child.id, true).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("heartbeats while no worker is up yet")
            .expect("stream open")
            .event;
        match std::sync::Arc::unwrap_or_clone(ev) {
            AgentEvent::SubAgentHeartbeat {
                child_session_id, ..
            } => {
                assert_eq!(child_session_id, child.id);
                beats.push(start.elapsed());
            }
            AgentEvent::SubAgentStarted { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(beats[0].as_secs(), 5, "{beats:?}");
    assert_eq!(beats[1].as_secs(), 10, "{beats:?}");
    engine.shutdown().await;
}

/// A file store that fails the loads of one id after a number of good ones.
#[derive(Debug)]
struct FailingLoads {
    inner: FileStore,
    /// id → loads still allowed before they fail.
    allowed: Mutex<HashMap<String, usize>>,
}

#[async_trait]
impl SessionStore for FailingLoads {
    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.create(session).await
    }
    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.save(session).await
    }
    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if let Some(left) = self.allowed.lock().unwrap().get_mut(id) {
            if *left == 0 {
                return Err(StoreError::Corrupt {
                    path: format!("{id}.json"),
                    reason: "test: unreadable".into(),
                });
            }
            *left -= 1;
        }
        self.inner.load(id).await
    }
    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        self.inner.update(id, mutate).await
    }
    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError> {
        self.inner.list_children(parent_id).await
    }
    async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_ids().await
    }
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

#[tokio::test]
async fn e3_a_load_failure_before_the_run_still_publishes_an_error_completion() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingLoads {
        inner: FileStore::open(dir.path()).await.unwrap(),
        allowed: Mutex::new(HashMap::new()),
    });
    let engine = Engine::builder()
        .data_dir(dir.path())
        .launcher(Arc::new(NeverUp))
        .store(store.clone())
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let child = engine
        .create_child(CreateChild::new(&root.id, "x"))
        .await
        .unwrap();
    // run_child's own check loads once; the run's check (E3) then fails.
    store.allowed.lock().unwrap().insert(child.id.clone(), 1);
    let mut events = engine.events(&root.id, Since::Now);
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        engine.run_child(&root.id, &child.id, true).await.unwrap(),
    )
    .await
    .expect("the run reports")
    .unwrap();
    assert_eq!(report.status, CompletionStatus::Error);
    assert!(report.error.unwrap().contains("corrupt"));
    loop {
        let ev = events.next().await.unwrap().event;
        if let AgentEvent::SubAgentCompleted { status, error, .. } =
            std::sync::Arc::unwrap_or_clone(ev)
        {
            assert_eq!(status, CompletionStatus::Error);
            assert!(error.unwrap().contains("corrupt"));
            break;
        }
    }
    engine.shutdown().await;
}
