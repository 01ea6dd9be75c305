//! A child created with `auto_run` and a free slot is stored while its run
//! starts (E2, E6): nothing of the run, not even `sub_agent_started`, is
//! seen before the child is durable, and a create the store refuses stops
//! the run unread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::{AgentEvent, CompletionStatus, Session};
use bamboo_e2e::engine::*;
use bamboo_engine::store::{FileStore, Mutator, SessionStore, StoreError};
use bamboo_engine::{async_trait, CreateChild, EngineError, Since};
use futures::StreamExt;

/// The engine's file store, with a slow (and, when `refuse`, failing) create
/// of child sessions, as a slow or full disk would make it.
#[derive(Debug)]
struct SlowCreate {
    files: FileStore,
    refuse: bool,
    /// Set once a child's create has returned.
    created: Arc<AtomicBool>,
}

#[async_trait]
impl SessionStore for SlowCreate {
    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        if session.parent_id.is_none() {
            return self.files.create(session).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = if self.refuse {
            Err(StoreError::Io {
                path: "sessions".into(),
                source: std::io::Error::other("no space left on device"),
            })
        } else {
            self.files.create(session).await
        };
        self.created.store(true, Ordering::SeqCst);
        r
    }
    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        self.files.save(session).await
    }
    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.files.load(id).await
    }
    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        self.files.update(id, mutate).await
    }
    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError> {
        self.files.list_children(parent_id).await
    }
    async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
        self.files.list_ids().await
    }
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.files.delete(id).await
    }
}

async fn engine_over(
    dir: &std::path::Path,
    refuse: bool,
) -> (bamboo_engine::Engine, Arc<AtomicBool>) {
    let created = Arc::new(AtomicBool::new(false));
    let store = SlowCreate {
        files: FileStore::open(dir).await.unwrap(),
        refuse,
        created: created.clone(),
    };
    let engine = builder(dir, 2)
        .store(Arc::new(store))
        .build()
        .await
        .unwrap();
    (engine, created)
}

/// A root, its events from now on, and a child's `auto_run` create input.
async fn an_auto_run_child(
    engine: &bamboo_engine::Engine,
) -> (String, bamboo_engine::EventStream, CreateChild) {
    let root = engine.create_root("root", None).await.unwrap().id;
    let events = engine.events(&root, Since::Now);
    let mut input = CreateChild::new(&root, "one two three four");
    input.auto_run = true;
    (root, events, input)
}

async fn next_event(events: &mut bamboo_engine::EventStream) -> Arc<AgentEvent> {
    let logged = tokio::time::timeout(SOON, events.next()).await.unwrap();
    logged.expect("the stream goes on").event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_of_a_run_is_seen_before_its_child_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, created) = engine_over(dir.path(), false).await;
    let (root, mut events, input) = an_auto_run_child(&engine).await;
    // Read while the create is still on its way to the disk.
    let engine = Arc::new(engine);
    let creating = tokio::spawn({
        let engine = engine.clone();
        async move { engine.create_child(input).await.unwrap().id }
    });
    let mut tokens = 0;
    loop {
        let ev = next_event(&mut events).await;
        assert!(
            created.load(Ordering::SeqCst),
            "an event of the child arrived before the child was stored: {ev:?}"
        );
        if let AgentEvent::SubAgentStarted {
            child_session_id, ..
        } = &*ev
        {
            // Announced: the child can be looked up.
            let found = engine.get_child(&root, child_session_id).await;
            assert!(found.is_ok(), "{found:?}");
        }
        if token_text(&ev).is_some() {
            tokens += 1;
        }
        if let AgentEvent::SubAgentCompleted { status, .. } = &*ev {
            assert_eq!(*status, CompletionStatus::Completed);
            break;
        }
    }
    assert!(tokens > 0, "the run streamed no token");
    let child = creating.await.unwrap();
    let stored = engine.get_child(&root, &child).await.unwrap();
    assert_eq!(stored.status, bamboo_domain::ChildStatus::Completed);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_the_store_refuses_fails_the_call_and_stops_the_run_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engine_over(dir.path(), true).await;
    let (root, mut events, input) = an_auto_run_child(&engine).await;
    let err = engine.create_child(input).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Store(StoreError::Io { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("no space left"), "{err}");
    loop {
        let ev = next_event(&mut events).await;
        assert!(
            token_text(&ev).is_none(),
            "a token of an unstored child: {ev:?}"
        );
        if let AgentEvent::SubAgentCompleted { status, error, .. } = &*ev {
            assert_eq!(*status, CompletionStatus::Error);
            let error = error.clone().unwrap_or_default();
            assert!(error.contains("could not be stored"), "{error}");
            assert!(error.contains("no space left"), "{error}");
            break;
        }
    }
    assert!(engine.list_children(&root).await.unwrap().is_empty());
    engine.shutdown().await;
}
