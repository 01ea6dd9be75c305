//! Approvals up the chain with real workers: a grandchild's request is
//! answered by the reviewer at its bypassed parent's level; without bypass it
//! climbs to the root, where (no policy, no human) it is denied (E17, E18).

use std::sync::{Arc, Mutex};

use bamboo_e2e::engine::*;
use bamboo_engine::{async_trait, ApprovalRequest, ChildApprovalReviewer, CreateChild, Engine};

/// Approves everything and remembers at which level it was asked.
#[derive(Debug, Default)]
struct Reviewer(Mutex<Vec<(String, String)>>);

#[async_trait]
impl ChildApprovalReviewer for Reviewer {
    async fn review(&self, level: &str, request: &ApprovalRequest) -> Option<bool> {
        self.0
            .lock()
            .unwrap()
            .push((level.to_owned(), request.tool_name.clone()));
        Some(true)
    }
}

async fn setup(dir: &std::path::Path, reviewer: Arc<Reviewer>) -> Engine {
    builder(dir, 2)
        .human_approvals(false)
        .child_approval_reviewer(reviewer)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bypassed_level_answers_its_childs_request_through_the_reviewer() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = Arc::new(Reviewer::default());
    let engine = setup(dir.path(), reviewer.clone()).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let child = engine
        .create_child(CreateChild::new(&root, "__spawn:__approve:bash"))
        .await
        .unwrap()
        .id;
    engine.set_bypass(&child, true).await.unwrap();
    let report = run_report(&engine, &root, &child).await;
    assert_eq!(
        report.result.as_deref(),
        Some("echo: spawned:echo: approved:bash"),
        "{report:?}"
    );
    assert_eq!(
        *reviewer.0.lock().unwrap(),
        vec![(child.clone(), "bash".to_owned())]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bypass_the_request_climbs_to_the_root_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = Arc::new(Reviewer::default());
    let engine = setup(dir.path(), reviewer.clone()).await;
    let (root, child) = root_and_child(&engine, "__spawn:__approve:bash").await;
    let report = run_report(&engine, &root, &child).await;
    assert_eq!(
        report.result.as_deref(),
        Some("echo: spawned:echo: denied:bash"),
        "{report:?}"
    );
    assert!(reviewer.0.lock().unwrap().is_empty(), "no bypassed level");
    engine.shutdown().await;
}
