//! A parent fans out children and prints their streams.
//!
//! ```sh
//! cargo build -p bamboo-worker
//! cargo run -p bamboo-engine --example fan_out -- target/debug/bamboo-worker
//! ```

use bamboo_domain::AgentEvent;
use bamboo_engine::{CreateChild, Engine};
use bamboo_subagent::spec::ExecutorSpec;

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
    let mut events = engine.subscribe(&parent.id);
    let tasks = [
        "research the topic",
        "draft an outline",
        "__sleep_ms:200 review the draft",
        "write a summary",
    ];
    for t in tasks {
        let mut input = CreateChild::new(&parent.id, t);
        input.role = "helper".into();
        input.auto_run = true;
        engine.create_child(input).await?;
    }
    let mut done = 0;
    while done < tasks.len() {
        match events.recv().await {
            Ok(AgentEvent::SubAgentStarted {
                child_session_id,
                title,
                ..
            }) => {
                println!(
                    "[{}] started: {}",
                    short(&child_session_id),
                    title.unwrap_or_default()
                )
            }
            Ok(AgentEvent::SubAgentEvent {
                child_session_id,
                event,
                ..
            }) => {
                if let AgentEvent::Token { content } = *event {
                    println!("[{}] {content}", short(&child_session_id));
                }
            }
            Ok(AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                ..
            }) => {
                println!("[{}] {status}", short(&child_session_id));
                done += 1;
            }
            Ok(_) => {}
            Err(e) => eprintln!("stream: {e}"),
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
