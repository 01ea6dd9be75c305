//! Lossless events and approvals as state, through the engine with real
//! workers (E7, E17): a late subscriber reads everything from seq 1, a
//! reader that stalls loses nothing, a grandchild's events and approval
//! requests reach the root, a late answer gets a typed error, and cli
//! children ask before they act unless the embedder opts out.

use std::time::Duration;

use bamboo_domain::{AgentEvent, ChildStatus, CompletionStatus};
use bamboo_e2e::engine::*;
use bamboo_engine::{ApprovalError, CreateChild, EngineError, LoggedEvent, Since};
use bamboo_subagent::spec::ExecutorSpec;
use futures::StreamExt;

/// Reads `stream` until `child`'s completion; checks the sequence numbers
/// run 1, 2, 3, ... with nothing missing or repeated.
async fn read_to_completion(
    stream: &mut bamboo_engine::EventStream,
    child: &str,
    first_seq: u64,
) -> Vec<LoggedEvent> {
    let mut got: Vec<LoggedEvent> = Vec::new();
    let wait = async {
        while let Some(e) = stream.next().await {
            let expected = got.last().map_or(first_seq, |l| l.seq + 1);
            assert_eq!(e.seq, expected, "no gap, no duplicate");
            let done = matches!(&*e.event, AgentEvent::SubAgentCompleted { child_session_id, .. } if child_session_id == child);
            got.push(e);
            if done {
                return;
            }
        }
        panic!("the stream ended before {child} completed");
    };
    tokio::time::timeout(SOON, wait)
        .await
        .expect("completion within the bound");
    got
}

fn tokens_of(events: &[LoggedEvent], child: &str) -> String {
    events
        .iter()
        .filter_map(|e| match &*e.event {
            AgentEvent::SubAgentEvent {
                child_session_id,
                event,
                ..
            } if **child_session_id == *child => match event.as_ref() {
                AgentEvent::Token { content } => Some(content.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_subscribing_late_gets_every_event_from_seq_1() {
    let dir = tempfile::tempdir().unwrap();
    // A ring of 16 events: most of this run is only in the log file.
    let engine = builder(dir.path(), 2)
        .event_capacity(16)
        .build()
        .await
        .unwrap();
    let (root, child) = root_and_child(&engine, &"w ".repeat(3000)).await;
    let report = run_report(&engine, &root, &child).await;
    assert_eq!(report.status, CompletionStatus::Completed);
    // The run is over before anyone subscribed.
    let mut late = engine.events(&root, Since::Start);
    let got = read_to_completion(&mut late, &child, 1).await;
    assert!(matches!(*got[0].event, AgentEvent::SubAgentStarted { .. }));
    assert_eq!(tokens_of(&got, &child), "w ".repeat(3000));
    // A history read ends by itself; resuming after a seq continues there.
    let history: Vec<_> = engine.logged_events(&root, Since::Start).collect().await;
    assert_eq!(history.len(), got.len());
    let tail: Vec<_> = engine
        .logged_events(&root, Since::After(10))
        .collect()
        .await;
    assert_eq!(tail.first().map(|e| e.seq), Some(11));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_loses_nothing_and_does_not_slow_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .event_capacity(16)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut stalled = engine.events(&root.id, Since::Start);
    let mut input = CreateChild::new(&root.id, "x ".repeat(20_000));
    input.auto_run = true;
    let child = engine.create_child(input).await.unwrap().id;
    // The child finishes while nobody reads.
    let mut live = engine.events(&root.id, Since::Start);
    completion(&mut live, &child).await;
    let got = read_to_completion(&mut stalled, &child, 1).await;
    assert_eq!(tokens_of(&got, &child), "x ".repeat(20_000));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchilds_events_and_approval_reach_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2).build().await.unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    let mut approvals = engine.approval_requests(Some(&root.id));
    let mut input = CreateChild::new(&root.id, "__spawn:__approve:deploy");
    input.auto_run = true;
    let child = engine.create_child(input).await.unwrap().id;
    let request = tokio::time::timeout(SOON, approvals.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.tool_name, "deploy");
    assert_eq!(request.ancestry.len(), 2, "grandchild → child → root");
    assert_eq!(request.ancestry[0], child);
    assert_eq!(request.ancestry[1], root.id);
    assert_eq!(
        engine.pending_approvals(Some(&root.id)),
        vec![request.clone()]
    );
    assert_eq!(engine.pending_approvals(Some(&child)).len(), 1);
    assert!(request.expires_at > request.created_at);
    engine.answer_approval(&request.id, true).unwrap();
    let got = read_to_completion(&mut events, &child, 1).await;
    let grandchild = &request.child_session_id;
    assert_eq!(tokens_of(&got, grandchild), "approved:deploy ");
    assert!(got.iter().any(|e| matches!(&*e.event,
        AgentEvent::ChildApprovalRequested { request_id, .. } if *request_id == request.id)));
    assert!(tokens_of(&got, &child).starts_with("spawned:"));
    assert!(engine.pending_approvals(None).is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_answered_after_expiry_gets_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .approval_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut approvals = engine.approval_requests(None);
    let mut input = CreateChild::new(&root.id, "__approve:write_file");
    input.auto_run = true;
    let child = engine.create_child(input).await.unwrap().id;
    let request = tokio::time::timeout(SOON, approvals.next())
        .await
        .unwrap()
        .unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    completion(&mut events, &child).await;
    let detail = engine.get_child(&root.id, &child).await.unwrap();
    assert_eq!(
        detail.last_result.as_deref(),
        Some("echo: denied:write_file")
    );
    match engine.answer_approval(&request.id, true) {
        Err(EngineError::Approval(ApprovalError::Expired(id))) => assert_eq!(id, request.id),
        other => panic!("expected the expired error, got {other:?}"),
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_children_ask_before_running_unless_the_embedder_opts_out() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let cli = ExecutorSpec::CliAdapter {
        command: "touch".into(),
        args: vec![marker.display().to_string()],
    };
    // Default: fail closed, the request waits for an answer.
    let engine = builder(dir.path(), 2).executor(cli).build().await.unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut approvals = engine.approval_requests(Some(&root.id));
    let mut input = CreateChild::new(&root.id, "go");
    input.auto_run = true;
    let child = engine.create_child(input).await.unwrap().id;
    let request = tokio::time::timeout(SOON, approvals.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.tool_name, "cli_adapter");
    assert!(request.resource.contains("touch"), "{request:?}");
    assert!(!marker.exists(), "nothing runs before the answer");
    engine.answer_approval(&request.id, false).unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    completion(&mut events, &child).await;
    let detail = engine.get_child(&root.id, &child).await.unwrap();
    assert_eq!(detail.status, ChildStatus::Error);
    assert!(!marker.exists());
    engine.shutdown().await;
}
