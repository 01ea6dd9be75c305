//! Child lifecycle points as the reference does them, over real worker
//! processes: in-band steering is answered once (C6), the run's transcript is
//! written back with its tool calls (E15), and a suspended child is kept with
//! its transcript and resumes (suspend/resume).

use bamboo_domain::{ChildStatus, CompletionStatus, ModelRef, Role};
use bamboo_e2e::engine::*;
use bamboo_engine::{CreateChild, Engine, SendMessage, SendOutcome, Since};
use bamboo_testkit::{Reply, ScriptedServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c6_a_message_taken_in_band_is_not_queued_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let s = steer_a_live_child(&engine, "turn-left").await;
    let copies = s
        .messages
        .iter()
        .filter(|m| m.role == Role::User && m.content == "turn-left")
        .count();
    assert_eq!(copies, 1, "{:?}", s.messages);
    assert!(
        !s.has_pending_user_message(),
        "the answered message must not be queued for the next run: {:?}",
        s.messages
    );
    assert!(s.child.unwrap().pending_messages.is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e15_tool_calls_and_results_survive_into_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("notes.txt"), "remember me").unwrap();
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[("c1", "read_file", json!({"path": "notes.txt"}))]),
        Reply::text("It says remember me."),
        Reply::text("Still remembered."),
    ])
    .await
    .unwrap();
    let engine: Engine = llm_engine(dir.path(), &server.base_url).await;
    let root = engine
        .create_root("root", Some(ModelRef::parse("openai/test-model").unwrap()))
        .await
        .unwrap()
        .id;
    let mut input = CreateChild::new(&root, "read the note");
    input.workspace = Some(ws.path().display().to_string());
    let child = engine.create_child(input).await.unwrap().id;
    let mut events = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let (status, error) = completion(&mut events, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let s = engine.session(&child).await.unwrap().unwrap();
    assert!(
        s.messages
            .iter()
            .any(|m| m.role == Role::Tool && m.content.contains("remember me")),
        "the tool result is written back: {:?}",
        s.messages
    );
    assert!(s.messages.iter().any(|m| m.tool_calls.is_some()));
    assert_eq!(s.messages.last().unwrap().content, "It says remember me.");
    engine
        .send_message(&root, &child, SendMessage::new("and now?"))
        .await
        .unwrap();
    let (status, error) = completion(&mut events, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let third = &server.received()[2].body;
    let roles: Vec<&str> = third["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert!(
        roles.contains(&"tool"),
        "the next run sees the tool result: {third}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_child_is_kept_with_its_transcript_and_resumes_on_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "part __suspend").await;
    let mut events = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    completion(&mut events, &child).await;
    let s = engine.session(&child).await.unwrap().unwrap();
    assert_eq!(s.status(), Some(ChildStatus::Suspended), "not completed");
    let kept = s.messages.len();
    assert_eq!(s.messages.last().unwrap().role, Role::Assistant);
    // `run` resumes: nothing is dropped and the run is not skipped.
    let report = engine
        .run_child(&root, &child, true)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(report.status, CompletionStatus::Completed);
    let s = engine.session(&child).await.unwrap().unwrap();
    assert!(s.messages.len() >= kept, "the transcript is kept on resume");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_child_resumes_on_send_message() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "part __suspend").await;
    let mut events = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    completion(&mut events, &child).await;
    let out = engine
        .send_message(&root, &child, SendMessage::new("go on"))
        .await
        .unwrap();
    assert_eq!(out, SendOutcome::Appended { run_queued: true });
    completion(&mut events, &child).await;
    let d = engine.get_child(&root, &child).await.unwrap();
    assert_eq!(d.status, ChildStatus::Completed);
    assert_eq!(d.last_result.as_deref(), Some("echo: go on"));
    engine.shutdown().await;
}
