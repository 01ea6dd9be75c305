//! A parent fans out four children, streams their events, approves what
//! they ask, and awaits their results.
//!
//! ```sh
//! cargo build -p bamboo-worker
//! cargo run -p bamboo-engine --example fan_out
//! ```

use bamboo_engine::{AgentEvent, Child, Engine, ExecutorSpec};
use futures::{future, stream, StreamExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .ephemeral()
        .executor(ExecutorSpec::Echo)
        .build()
        .await?;
    let parent = engine.create_root("orchestrator", None).await?;
    // Approve whatever any child under the parent asks.
    let (mut asks, approver) = (engine.approval_requests(Some(&parent.id)), engine.clone());
    tokio::spawn(async move {
        while let Some(ask) = asks.next().await {
            println!("approving {} on {}", ask.tool_name, ask.resource);
            // Refused only if the request expired or its run ended: the child has its answer.
            let _ = approver.answer_approval(&ask.id, true);
        }
    });
    let tasks = [
        "research",
        "draft an outline",
        "__sleep_ms:200 review",
        "__approve:write_file sum up",
    ];
    let spawns = tasks.map(|task| engine.spawn(Child::new(&parent.id, task).role("helper")));
    let children = future::try_join_all(spawns).await?;
    // Every child's events as they come, in order per child; each stream ends with its run.
    let mut events = stream::select_all(children.iter().map(|child| child.events()));
    while let Some(logged) = events.next().await {
        if let Some(AgentEvent::Token { content }) = logged.child_event() {
            let child = logged.event.child_session_id().unwrap_or_default();
            println!("#{} [{}] {content}", logged.seq, &child[..8]);
        }
    }
    for (task, child) in tasks.iter().zip(&children) {
        let outcome = child.wait().await?;
        println!("{task} → {}: {:?}", outcome.status, outcome.result);
    }
    engine.shutdown().await;
    Ok(())
}
