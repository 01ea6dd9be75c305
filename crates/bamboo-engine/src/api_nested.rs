//! The facade's side of nested spawns: the [`NestedSpawner`] the
//! engine injects into its runtime. A request with an explicit tool action
//! goes through the tool layer as the requester; otherwise the grandchild is
//! created and run, and the reply carries its result. The depth cap is
//! enforced by `create_child` at every level.
// Behaviours: E18.

use std::sync::Weak;

use bamboo_domain::CompletionStatus;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::nested::NestedSpawner;
use crate::run_path::RunPath;
use crate::types::CreateChild;

/// Reaches the facade of a runtime it does not keep alive.
#[derive(Debug)]
pub(crate) struct FacadeSpawner(pub Weak<RunPath>);

impl NestedSpawner for FacadeSpawner {
    fn serve(&self, requester: String, body: Value) -> BoxFuture<'static, Value> {
        let runtime = self.0.clone();
        async move {
            let Some(inner) = runtime.upgrade() else {
                return json!({"success": false, "result": "the engine has shut down"});
            };
            let engine = Engine {
                inner,
                scratch: None,
            };
            // Inbox questions (ask, reply, inbox) between the requester and its kin.
            if let Some(reply) = crate::ask::serve(&engine, &requester, &body).await {
                return reply;
            }
            // An explicit tool action goes through the tool layer as the requester.
            if body.get("action").is_some() {
                return crate::tool::call(&engine, &requester, body).await;
            }
            match spawn_and_wait(&engine, &requester, &body).await {
                Ok(result) => json!({"success": true, "result": result}),
                Err(reason) => json!({"success": false, "result": reason}),
            }
        }
        .boxed()
    }
}

async fn spawn_and_wait(engine: &Engine, requester: &str, body: &Value) -> Result<String, String> {
    let assignment = body
        .get("assignment")
        .and_then(Value::as_str)
        .ok_or("subagent request has no \"assignment\" string")?;
    let mut input = CreateChild::new(requester, assignment);
    input.role = str_field(body, "subagent_type")
        .or_else(|| str_field(body, "role"))
        .unwrap_or_default();
    input.title = str_field(body, "title");
    input.responsibility = str_field(body, "responsibility").unwrap_or_default();
    let child = engine
        .create_child(input)
        .await
        .map_err(|e| e.to_string())?;
    let ticket = engine
        .run_child(requester, &child.id, false)
        .await
        .map_err(|e| e.to_string())?;
    let report = ticket
        .await
        .map_err(|_| "the grandchild's run was dropped before it reported".to_owned())?;
    match report.status {
        CompletionStatus::Completed => Ok(report.result.unwrap_or_default()),
        other => Err(format!(
            "grandchild {} ended with status {other}: {}",
            child.id,
            report.error.unwrap_or_default()
        )),
    }
}

fn str_field(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_owned)
}
