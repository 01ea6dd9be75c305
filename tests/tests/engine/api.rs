//! The embedding API over real worker processes: `Engine::spawn` and the
//! `ChildHandle` it returns (a child's own events, lossless from its run's
//! start; its outcome; steering; cancelling; pending children), and the
//! ephemeral data directory.

use std::time::Duration;

use bamboo_engine::{
    AgentEvent, Child, ChildHandle, CompletionStatus, Engine, ExecutorSpec, LoggedEvent,
    SendOutcome, Since,
};
use futures::StreamExt;

/// Bound for anything that should happen soon.
const SOON: Duration = Duration::from_secs(30);

async fn engine(dir: &std::path::Path, max_running: usize) -> Engine {
    Engine::builder()
        .data_dir(dir)
        .worker_program(bamboo_e2e::worker_bin())
        .executor(ExecutorSpec::Echo)
        .max_running(max_running)
        .build()
        .await
        .expect("engine builds")
}

/// Everything a handle's stream yields, which must end by itself.
async fn all_events(child: &ChildHandle) -> Vec<LoggedEvent> {
    tokio::time::timeout(SOON, child.events().collect::<Vec<_>>())
        .await
        .expect("a child's stream ends with its run")
}

fn tokens(events: &[LoggedEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e.child_event() {
            Some(AgentEvent::Token { content }) => Some(content.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_streams_only_its_child_and_misses_nothing_when_read_late() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 4).await;
    let root = engine.create_root("root", None).await.unwrap();
    // The child spawns a grandchild, whose events also reach the root's log.
    let child = engine
        .spawn(Child::new(&root.id, "one __spawn:deep two"))
        .await
        .unwrap();
    let sibling = engine
        .spawn(Child::new(&root.id, "sibling words"))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(SOON, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.status, CompletionStatus::Completed, "{outcome:?}");
    tokio::time::timeout(SOON, sibling.wait())
        .await
        .unwrap()
        .unwrap();

    // Read only now, after the run ended: every event is still there.
    let got = all_events(&child).await;
    assert!(
        matches!(&*got[0].event, AgentEvent::SubAgentStarted { child_session_id, .. } if child_session_id == child.id()),
        "starts with the child's start: {:?}",
        got[0]
    );
    assert!(matches!(
        &*got.last().unwrap().event,
        AgentEvent::SubAgentCompleted { .. }
    ));
    for e in &got {
        assert_eq!(e.event.child_session_id(), Some(child.id()), "{e:?}");
    }
    assert_eq!(tokens(&got), "one spawned:echo: deep two ");

    // The same as the root's whole log holds of this child, event for event.
    let whole: Vec<LoggedEvent> = engine.logged_events(&root.id, Since::Start).collect().await;
    let own: Vec<u64> = whole
        .iter()
        .filter(|e| e.event.child_session_id() == Some(child.id()))
        .map(|e| e.seq)
        .collect();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), own);
    // The root's log does carry a grandchild and a sibling, which the
    // handle left out.
    let others: Vec<&str> = whole
        .iter()
        .filter_map(|e| e.event.child_session_id())
        .filter(|id| *id != child.id() && *id != sibling.id())
        .collect();
    assert!(
        !others.is_empty(),
        "the grandchild's events are in the root's log"
    );
    assert_eq!(tokens(&all_events(&sibling).await), "sibling words ");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_reports_completed_failed_and_cancelled_runs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 4).await;
    let root = engine.create_root("root", None).await.unwrap();
    let ok = engine
        .spawn(Child::new(&root.id, "all good"))
        .await
        .unwrap();
    let bad = engine
        .spawn(Child::new(&root.id, "__fail:kaput"))
        .await
        .unwrap();
    let long = engine
        .spawn(Child::new(&root.id, "__sleep_ms:600000 never"))
        .await
        .unwrap();

    let done = ok.wait().await.unwrap();
    assert_eq!(done.status, CompletionStatus::Completed);
    assert_eq!(done.result.as_deref(), Some("echo: all good"));
    assert_eq!(done.error, None);
    assert_eq!(done.id, ok.id());

    let failed = bad.wait().await.unwrap();
    assert_eq!(failed.status, CompletionStatus::Error);
    assert_eq!(failed.error.as_deref(), Some("kaput"));
    assert_eq!(failed.result, None);

    // Cancel once it has started, then its outcome says so.
    let mut events = long.events();
    let first = tokio::time::timeout(SOON, events.next()).await.unwrap();
    assert!(matches!(
        first.as_ref().map(|e| &*e.event),
        Some(AgentEvent::SubAgentStarted { .. })
    ));
    assert!(long.cancel().await.unwrap().was_running);
    let cancelled = tokio::time::timeout(SOON, long.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, CompletionStatus::Cancelled);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_child_runs_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    // One slot: a child queued first would run first.
    let engine = engine(dir.path(), 1).await;
    let root = engine.create_root("root", None).await.unwrap();
    let pending = engine
        .spawn(Child::new(&root.id, "later please").pending())
        .await
        .unwrap();
    let now = engine
        .spawn(Child::new(&root.id, "right now"))
        .await
        .unwrap();
    tokio::time::timeout(SOON, now.wait())
        .await
        .unwrap()
        .unwrap();
    let log: Vec<LoggedEvent> = engine.logged_events(&root.id, Since::Start).collect().await;
    assert!(
        !log.iter()
            .any(|e| e.event.child_session_id() == Some(pending.id())),
        "the pending child did not run: {log:?}"
    );
    let detail = pending.detail().await.unwrap();
    assert_eq!(detail.status, bamboo_engine::ChildStatus::Pending);
    assert_eq!(detail.round_count, 0);

    pending.run().await.unwrap();
    let outcome = tokio::time::timeout(SOON, pending.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.result.as_deref(), Some("echo: later please"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_steers_a_running_child_and_reruns_an_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 4).await;
    let root = engine.create_root("root", None).await.unwrap();
    let child = engine
        .spawn(Child::new(&root.id, "first __steer"))
        .await
        .unwrap();
    // Started: the message steers this run.
    let mut events = child.events();
    tokio::time::timeout(SOON, events.next()).await.unwrap();
    let out = child.send("steered").await.unwrap();
    assert!(matches!(out, SendOutcome::Steered { .. }), "{out:?}");
    let first = tokio::time::timeout(SOON, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.result.as_deref(), Some("echo: first steered"));

    // Idle: the message starts a second run, which the handle now follows.
    let out = child.send("again").await.unwrap();
    assert_eq!(out, SendOutcome::Appended { run_queued: true });
    let second = tokio::time::timeout(SOON, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.result.as_deref(), Some("echo: again"));
    let got = all_events(&child).await;
    assert_eq!(tokens(&got), "again ");
    let ends = got
        .iter()
        .filter(|e| matches!(&*e.event, AgentEvent::SubAgentCompleted { .. }))
        .count();
    assert_eq!(ends, 1, "only the second run: {got:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_engine_removes_its_data_at_shutdown_or_drop() {
    // The worker is found on its own (BAMBOO_WORKER_BIN, or cargo's
    // target directory next to this test).
    let engine = Engine::builder()
        .ephemeral()
        .executor(ExecutorSpec::Echo)
        .build()
        .await
        .expect("an ephemeral engine builds and finds the worker");
    let dir = engine.data_dir().to_path_buf();
    let root = engine.create_root("root", None).await.unwrap();
    let child = engine.spawn(Child::new(&root.id, "hi")).await.unwrap();
    child.wait().await.unwrap();
    let held = std::fs::read_dir(&dir).unwrap().count();
    assert!(held > 0, "{} holds the engine's data", dir.display());
    engine.shutdown().await;
    assert!(!dir.exists(), "{} removed at shutdown", dir.display());

    // Dropped without a shutdown: removed when the last handle goes.
    let engine = Engine::builder()
        .ephemeral()
        .worker_program(bamboo_e2e::worker_bin())
        .build()
        .await
        .unwrap();
    let dir = engine.data_dir().to_path_buf();
    engine.create_root("root", None).await.unwrap();
    let clone = engine.clone();
    drop(engine);
    assert!(dir.exists(), "a clone still holds it");
    drop(clone);
    assert!(!dir.exists(), "{} removed on drop", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_on_an_existing_child_follows_its_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 4).await;
    let root = engine.create_root("root", None).await.unwrap();
    let first = engine.spawn(Child::new(&root.id, "once")).await.unwrap();
    first.wait().await.unwrap();
    // Another handle, from the ids alone: the finished run is behind it.
    let again = engine.child(&root.id, first.id()).await.unwrap();
    again.send("twice").await.unwrap();
    let outcome = tokio::time::timeout(SOON, again.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.result.as_deref(), Some("echo: twice"));
    let wrong = engine.child(&root.id, "no-such-child").await;
    assert!(wrong.is_err(), "an unknown child has no handle");
    engine.shutdown().await;
}
