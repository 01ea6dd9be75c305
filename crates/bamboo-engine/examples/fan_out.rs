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
        .max_running(3)
        .build()
        .await?;
    let parent = engine.create_root("orchestrator", None).await?;
    // Approve whatever any child under the parent asks.
    let (mut asks, approver) = (engine.approval_requests(Some(&parent.id)), engine.clone());
    tokio::spawn(async move {
        while let Some(ask) = asks.next().await {
            println!(
                "approving {} for {}",
                ask.tool_name,
                &ask.child_session_id[..8]
            );
            // Refused only when the request expired or its run ended: the child has its answer.
            let _ = approver.answer_approval(&ask.id, true);
        }
    });
    let tasks = [
        "research the topic",
        "draft an outline",
        "__sleep_ms:200 review the draft",
        "__approve:write_file write a summary",
    ];
    let mut children = Vec::new();
    for task in tasks {
        children.push(
            engine
                .spawn(Child::new(&parent.id, task).role("helper"))
                .await?,
        );
    }
    // Every child's events, as they come; each stream ends with its child's run.
    let mut events = stream::select_all(
        children
            .iter()
            .map(|c| c.events().map(move |e| (c.id()[..8].to_owned(), e))),
    );
    while let Some((child, logged)) = events.next().await {
        if let Some(AgentEvent::Token { content }) = logged.child_event() {
            println!("#{} [{child}] {content}", logged.seq);
        }
    }
    let outcomes = future::try_join_all(children.iter().map(|c| c.wait())).await?;
    for (task, outcome) in tasks.iter().zip(outcomes) {
        println!(
            "{task} → {}: {}",
            outcome.status,
            outcome.result.unwrap_or_default()
        );
    }
    engine.shutdown().await;
    Ok(())
}
