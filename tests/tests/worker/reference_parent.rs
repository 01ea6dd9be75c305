//! The reference parent (crate `bamboo-subagent` 2026.7.3 from crates.io,
//! here as `ref_subagent`) drives our worker: it spawns and provisions it,
//! finds it in the fabric, and sends a `run` whose `messages` carry an unknown
//! role, null content and array content (F7, F8, E14). Our worker must take
//! the frame and end the run with a terminal.

use std::time::Duration;

use ref_subagent::fleet::spawn_worker;
use ref_subagent::proto::{ChildFrame, ParentFrame, RunSpec, TerminalStatus};
use ref_subagent::provision::{ChildIdentity, ExecutorSpec, ProvisionSpec};
use ref_subagent::transport::ChildClient;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_parent_gets_a_terminal_for_messages_with_unknown_roles_and_null_content() {
    let dir = tempfile::tempdir().unwrap();
    let fabric = dir.path().join("agents");
    let mut spec = ProvisionSpec::new(
        ChildIdentity {
            child_id: "ref-c1".into(),
            parent_id: Some("ref-p1".into()),
            project_key: None,
            role: "tester".into(),
            depth: 1,
        },
        ExecutorSpec::Echo,
        fabric.to_string_lossy().into_owned(),
    );
    spec.reusable = false;
    let worker = spawn_worker(&bamboo_e2e::worker_bin(), &[], &spec, PATIENCE)
        .await
        .expect("our worker registers where the reference parent looks");
    let mut client = ChildClient::connect(&worker.record.endpoint).await.unwrap();
    let messages = vec![
        json!({"role": "system", "content": "be brief"}),
        json!({"role": "developer", "content": "house rules"}),
        json!({"role": "user", "content": null}),
        json!({"role": "assistant", "content": [{"type": "text", "text": "ok"}], "reasoning": "x"}),
        json!({"role": "user", "content": "hello world"}),
    ];
    client
        .send(ParentFrame::Run(RunSpec {
            assignment: "hello world".into(),
            reasoning_effort: None,
            messages,
        }))
        .await
        .unwrap();
    let terminal = tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = client.next_frame().await.unwrap() {
            if let ChildFrame::Terminal { status, result, .. } = frame {
                return (status, result);
            }
        }
        panic!("connection closed before a terminal")
    })
    .await
    .expect("a terminal, not a hang");
    assert_eq!(terminal.0, TerminalStatus::Completed);
    assert_eq!(terminal.1.as_deref(), Some("echo: hello world"));
    let _ = client.close().await;
    worker.kill().await;
}

/// Our engine's `run` frame with the approved-ahead extension (E17) is a
/// `run` the reference's worker reads: the field is ignored, the assignment
/// and transcript arrive.
#[test]
fn the_reference_reads_a_run_frame_that_carries_approvals_ahead() {
    let ours = bamboo_subagent::frames::ParentFrame::Run(bamboo_subagent::frames::RunRequest {
        approved: vec![bamboo_subagent::frames::Approved {
            tool_name: "cli_adapter".into(),
            resource: "sh -c cat (assignment on stdin)".into(),
        }],
        ..bamboo_subagent::frames::RunRequest::new("do it")
    });
    let text = serde_json::to_string(&ours).unwrap();
    assert!(text.contains(r#""approved":[{"#), "{text}");
    match serde_json::from_str::<ParentFrame>(&text).unwrap() {
        ParentFrame::Run(RunSpec { assignment, .. }) => assert_eq!(assignment, "do it"),
        other => panic!("not a run: {other:?}"),
    }
}
