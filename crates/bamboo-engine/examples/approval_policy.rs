//! A custom approval policy: children's gated actions are allowed or refused
//! by rule, and what no rule covers is left to a human (here there is none,
//! so it is refused: the engine fails closed).
//!
//! ```sh
//! cargo build -p bamboo-worker
//! cargo run -p bamboo-engine --example approval_policy
//! ```

use std::sync::Arc;

use bamboo_engine::{async_trait, ApprovalPolicy, ApprovalRequest, Child, Engine, ExecutorSpec};
use futures::future;

/// Allows reading, refuses deleting, has no opinion on anything else.
#[derive(Debug)]
struct ReadNotDelete;

#[async_trait]
impl ApprovalPolicy for ReadNotDelete {
    async fn decide(&self, request: &ApprovalRequest) -> Option<bool> {
        let verdict = match request.tool_name.as_str() {
            "read_file" | "list_dir" => Some(true),
            tool if tool.starts_with("delete") => Some(false),
            // `None`: ask a human (Engine::approval_requests), if there is one.
            _ => None,
        };
        println!(
            "{} asks for {}: {verdict:?}",
            &request.child_session_id[..8],
            request.tool_name
        );
        verdict
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .ephemeral()
        .executor(ExecutorSpec::Echo)
        .approval_policy(Arc::new(ReadNotDelete))
        .human_approvals(false)
        .build()
        .await?;
    let parent = engine.create_root("orchestrator", None).await?;
    let tasks = [
        "__approve:read_file look",
        "__approve:delete_branch tidy",
        "__approve:send_mail tell",
    ];
    let mut children = Vec::new();
    for task in tasks {
        children.push(engine.spawn(Child::new(&parent.id, task)).await?);
    }
    // The echo executor answers `approved:<tool>` or `denied:<tool>`.
    for outcome in future::try_join_all(children.iter().map(|c| c.wait())).await? {
        println!("{}: {}", outcome.status, outcome.result.unwrap_or_default());
    }
    engine.shutdown().await;
    Ok(())
}
