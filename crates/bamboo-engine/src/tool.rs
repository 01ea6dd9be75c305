//! The JSON face of the child actions, for a tool interface (the SubAgent
//! tool). Input: `{"action": "...", ...}`; output: `{"success": bool,
//! "result": ...}`. This layer only translates; the typed calls on
//! [`Engine`] do the work.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::types::{CreateChild, SendMessage, UpdateChild};

#[derive(Deserialize)]
struct ChildRef {
    child_id: String,
}

#[derive(Deserialize)]
struct RunArgs {
    child_id: String,
    #[serde(default = "yes")]
    reset_transcript: bool,
}

fn yes() -> bool {
    true
}

/// Runs one tool call on behalf of `parent_id`.
///
/// ```no_run
/// # async fn demo(engine: bamboo_engine::Engine, parent: String) {
/// let out = bamboo_engine::tool::call(&engine, &parent,
///     serde_json::json!({"action": "create", "assignment": "say hi", "auto_run": true})).await;
/// assert_eq!(out["success"], true);
/// # }
/// ```
pub async fn call(engine: &Engine, parent_id: &str, args: Value) -> Value {
    match dispatch(engine, parent_id, args).await {
        Ok(result) => json!({"success": true, "result": result}),
        Err(e) => json!({"success": false, "result": e}),
    }
}

async fn dispatch(engine: &Engine, parent: &str, args: Value) -> Result<Value, String> {
    let action = args
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("create")
        .to_owned();
    let out = match action.as_str() {
        "create" => {
            let mut input: CreateChild = parse(with_parent(args, parent))?;
            input.parent_id = parent.to_owned();
            to_json(engine.create_child(input).await)
        }
        "list" => to_json(engine.list_children(parent).await),
        "get" => {
            let r: ChildRef = parse(args)?;
            to_json(engine.get_child(parent, &r.child_id).await)
        }
        "update" => {
            let r: ChildRef = parse(args.clone())?;
            let u: UpdateChild = parse(args)?;
            to_json(engine.update_child(parent, &r.child_id, u).await)
        }
        "run" => {
            let r: RunArgs = parse(args)?;
            let queued = engine.run_child(parent, &r.child_id, r.reset_transcript).await;
            to_json(queued.map(|_| json!({"child_id": r.child_id, "queued": true})))
        }
        "send_message" => {
            let r: ChildRef = parse(args.clone())?;
            let m: SendMessage = parse(args)?;
            to_json(engine.send_message(parent, &r.child_id, m).await)
        }
        "cancel" => {
            let r: ChildRef = parse(args)?;
            to_json(engine.cancel_child(parent, &r.child_id).await)
        }
        "delete" => {
            let r: ChildRef = parse(args)?;
            to_json(engine.delete_child(parent, &r.child_id).await)
        }
        other => Err(format!(
            "unknown action {other:?}: use create, list, get, update, run, send_message, cancel or delete"
        )),
    };
    out
}

fn with_parent(mut args: Value, parent: &str) -> Value {
    if let Some(obj) = args.as_object_mut() {
        obj.insert("parent_id".into(), json!(parent));
        obj.remove("action");
    }
    args
}

fn parse<T: DeserializeOwned>(args: Value) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| format!("invalid arguments: {e}"))
}

fn to_json<T: serde::Serialize>(r: Result<T, EngineError>) -> Result<Value, String> {
    let v = r.map_err(|e| e.to_string())?;
    serde_json::to_value(v).map_err(|e| format!("cannot encode the result: {e}"))
}
