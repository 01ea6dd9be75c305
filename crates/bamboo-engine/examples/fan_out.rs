//! A parent fans out children, prints their streams (lossless, in order,
//! with sequence numbers) and answers their approval requests.
//!
//! ```sh
//! cargo build -p bamboo-worker
//! cargo run -p bamboo-engine --example fan_out -- target/debug/bamboo-worker
//! ```

use bamboo_domain::AgentEvent;
use bamboo_engine::{CreateChild, Engine, EngineError, Since};
use bamboo_subagent::spec::ExecutorSpec;
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let worker = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/debug/bamboo-worker".into());
    let data = std::env::temp_dir().join(format!("bamboo-fan-out-{}", std::process::id()));
    let engine = Engine::builder(&data)
        .worker_program(worker)
        .executor(ExecutorSpec::Echo)
        .max_running(3)
        .build()
        .await?;
    let parent = engine.create_root("orchestrator", None).await?;
    // From the start: nothing the children do can be missed, however slow
    // this loop is.
    let mut events = engine.events(&parent.id, Since::Start);
    // Approvals are state: answer each open request, wherever it comes from
    // in the tree under `parent`.
    let mut approvals = engine.approval_requests(Some(&parent.id));
    let answerer = engine.clone();
    tokio::spawn(async move {
        while let Some(request) = approvals.next().await {
            println!(
                "approval {} for {} on {:?}: yes",
                request.id, request.tool_name, request.resource
            );
            // A request that expired or whose run ended meanwhile is not an
            // error for the parent: the child already has its answer.
            if let Err(EngineError::Approval(why)) = answerer.answer_approval(&request.id, true) {
                println!("note: {why}");
            }
        }
    });
    let tasks = [
        "research the topic",
        "draft an outline",
        "__sleep_ms:200 review the draft",
        "__approve:write_file write a summary",
    ];
    for t in tasks {
        let mut input = CreateChild::new(&parent.id, t);
        input.role = "helper".into();
        input.auto_run = true;
        engine.create_child(input).await?;
    }
    let mut done = 0;
    while done < tasks.len() {
        let Some(logged) = events.next().await else {
            break;
        };
        match &*logged.event {
            AgentEvent::SubAgentStarted {
                child_session_id,
                title,
                ..
            } => {
                println!(
                    "#{} [{}] started: {}",
                    logged.seq,
                    short(child_session_id),
                    title.as_deref().unwrap_or_default()
                )
            }
            AgentEvent::SubAgentEvent {
                child_session_id,
                event,
                ..
            } => {
                if let AgentEvent::Token { content } = &**event {
                    println!("#{} [{}] {content}", logged.seq, short(child_session_id));
                }
            }
            AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                ..
            } => {
                println!("#{} [{}] {status}", logged.seq, short(child_session_id));
                done += 1;
            }
            _ => {}
        }
    }
    for c in engine.list_children(&parent.id).await? {
        let d = engine.get_child(&parent.id, &c.id).await?;
        println!("{} → {}", c.title, d.last_result.unwrap_or_default());
    }
    println!("workers started: {}", engine.stats().workers_started);
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..8.min(id.len())]
}
