//! Steering, rehydration and nested spawn with real workers (C6, E14-E16, E18).

use bamboo_domain::{ChildStatus, CompletionStatus, Role};
use bamboo_e2e::engine::*;
use bamboo_engine::{CreateChild, SendMessage, SendOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_reaches_a_running_child_in_band() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let s = steer_a_live_child(&engine, "turn-left").await;
    let answer = s
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .unwrap();
    assert!(answer.content.contains("turn-left"), "{}", answer.content);
    // The durable copy is kept in the transcript, not lost.
    assert!(s
        .messages
        .iter()
        .any(|m| m.role == Role::User && m.content == "turn-left"));
    assert!(s.child.unwrap().pending_messages.is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_as_the_run_ends_is_kept_durably() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "one two three").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    // Sent while the run is finishing: it never waits for steering.
    first_event(&mut events, "last token", |e| {
        token_text(e) == Some("three ")
    })
    .await;
    let mut msg = SendMessage::new("late-note");
    msg.run = false;
    engine.send_message(&root, &child, msg).await.unwrap();
    completion(&mut events, &child).await;
    let s = engine.session(&child).await.unwrap().unwrap();
    assert!(
        s.messages
            .iter()
            .any(|m| m.role == Role::User && m.content == "late-note"),
        "late message lost: {:?}",
        s.messages
    );
    assert!(s.child.unwrap().pending_messages.is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_ships_the_earlier_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1).await;
    let (root, child) = root_and_child(&engine, "first").await;
    let r1 = engine
        .run_child(&root, &child, true)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(r1.result.as_deref(), Some("echo: first"));
    let out = engine
        .send_message(&root, &child, SendMessage::new("second"))
        .await
        .unwrap();
    assert_eq!(out, SendOutcome::Appended { run_queued: true });
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    completion(&mut events, &child).await;
    let s = engine.session(&child).await.unwrap().unwrap();
    let roles: Vec<_> = s
        .messages
        .iter()
        .map(|m| (m.role, m.content.as_str()))
        .collect();
    assert_eq!(
        roles[1..],
        [
            (Role::User, "first"),
            (Role::Assistant, "echo: first"),
            (Role::User, "second"),
            (Role::Assistant, "echo: second"),
        ]
    );
    assert_eq!(s.child.unwrap().round_count, 2);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_spawn_below_the_cap_works_and_at_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 4)
        .max_spawn_depth(2)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("r", None).await.unwrap();
    // Depth 1 spawns a depth-2 grandchild, which (at the cap) tries again.
    let child = engine
        .create_child(CreateChild::new(&root.id, "__spawn:__spawn:deeper"))
        .await
        .unwrap();
    let report = engine
        .run_child(&root.id, &child.id, true)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
    let result = report.result.unwrap_or_default();
    assert!(result.starts_with("echo: spawned:"), "{result}");
    assert!(
        result.contains("spawn-failed:"),
        "grandchild at the cap must be refused: {result}"
    );
    assert!(result.contains("depth cap"), "{result}");
    let grandkids = engine.list_children(&child.id).await.unwrap();
    assert_eq!(
        grandkids.len(),
        1,
        "grandchild parented under the requesting child"
    );
    assert_eq!(grandkids[0].status, ChildStatus::Completed);
    let gk = engine.session(&grandkids[0].id).await.unwrap().unwrap();
    assert_eq!(gk.spawn_depth, 2);
    assert!(engine.list_children(&gk.id).await.unwrap().is_empty());
    engine.shutdown().await;
}

/// E12 + E18: a child waiting on its grandchild lends it its slot, so nesting
/// works even at a running limit of 1, and never more than one actor runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_spawn_works_at_a_running_limit_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 1).build().await.unwrap();
    let root = engine.create_root("r", None).await.unwrap();
    let child = engine
        .create_child(CreateChild::new(&root.id, "__spawn:__spawn:leaf"))
        .await
        .unwrap();
    let ticket = engine.run_child(&root.id, &child.id, true).await.unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), ticket)
        .await
        .expect("a nested spawn at a running limit of 1 must not hang")
        .unwrap();
    assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
    let result = report.result.unwrap_or_default();
    assert!(result.contains("echo: leaf"), "{result}");
    assert_eq!(engine.stats().peak_running, 1, "{:?}", engine.stats());
    engine.shutdown().await;
}
