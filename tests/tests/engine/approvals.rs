//! Approvals through the engine with real workers (E17): policy, human via
//! the API, timeout, fail closed.

use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_e2e::engine::*;
use bamboo_engine::{async_trait, ApprovalPolicy, ApprovalRequest, Engine};

#[derive(Debug)]
struct AllowOnly(&'static str);

#[async_trait]
impl ApprovalPolicy for AllowOnly {
    async fn decide(&self, r: &ApprovalRequest) -> Option<bool> {
        Some(r.tool_name == self.0)
    }
}

#[derive(Debug)]
struct Defer;

#[async_trait]
impl ApprovalPolicy for Defer {
    async fn decide(&self, _: &ApprovalRequest) -> Option<bool> {
        None
    }
}

async fn run_to_result(engine: &Engine, assignment: &str) -> String {
    let (root, child) = root_and_child(engine, assignment).await;
    let report = run_report(engine, &root, &child).await;
    assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
    report.result.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_approves_and_denies_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .approval_policy(Arc::new(AllowOnly("read")))
        .build()
        .await
        .unwrap();
    let out = run_to_result(&engine, "__approve:read __approve:bash").await;
    assert_eq!(out, "echo: approved:read denied:bash");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_answers_through_the_api_after_the_policy_defers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .approval_policy(Arc::new(Defer))
        .build()
        .await
        .unwrap();
    let (root, child) = root_and_child(&engine, "__approve:deploy done").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let ev = first_event(&mut events, "child_approval_requested", |e| {
        matches!(e, AgentEvent::ChildApprovalRequested { .. })
    })
    .await;
    let AgentEvent::ChildApprovalRequested {
        request_id,
        tool_name,
        child_session_id,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        (tool_name.as_str(), child_session_id.as_str()),
        ("deploy", child.as_str())
    );
    engine.answer_approval(&request_id, true).unwrap();
    assert!(
        engine.answer_approval(&request_id, true).is_err(),
        "answered once only"
    );
    assert_eq!(
        completion(&mut events, &child).await.0,
        CompletionStatus::Completed
    );
    let d = engine.get_child(&root, &child).await.unwrap();
    assert_eq!(d.last_result.as_deref(), Some("echo: approved:deploy done"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_denied_after_the_timeout_without_stalling_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .approval_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let out = run_to_result(&engine, "before __approve:rm after").await;
    assert_eq!(out, "echo: before denied:rm after");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_policy_and_no_human_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .human_approvals(false)
        .build()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let out = run_to_result(&engine, "__approve:anything").await;
    assert_eq!(out, "echo: denied:anything");
    assert!(started.elapsed() < Duration::from_secs(10));
    engine.shutdown().await;
}
