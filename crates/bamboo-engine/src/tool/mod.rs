//! The SubAgent tool: the JSON face of the child actions, with the reference
//! framework's argument names, result fields, statuses and notes
//! (`shared/subagent-tool.md`). Input: `{"action": "...", ...}`; output:
//! `{"success": bool, "result": ...}`. This layer only translates; the typed
//! calls on [`Engine`] do the work. [`schema`] is derived from the same
//! argument types the parser uses.

mod args;
mod verbs;

use serde_json::{json, Value};

use crate::engine::Engine;
use args::ToolCall;
pub use verbs::{
    NOTE_ALREADY_RUNNING, NOTE_APPENDED_IDLE, NOTE_APPENDED_QUEUED, NOTE_MESSAGE_QUEUED,
    NOTE_RETRY_QUEUED, NOTE_UPDATED, UPDATE_NEEDS_A_FIELD,
};

/// The tool's name as a parent model sees it.
pub const NAME: &str = "SubAgent";

/// Runs one tool call on behalf of `parent_id`.
///
/// ```no_run
/// # async fn demo(engine: bamboo_engine::Engine, parent: String) {
/// let out = bamboo_engine::tool::call(&engine, &parent, serde_json::json!({
///     "action": "create", "title": "Greeter", "responsibility": "greetings",
///     "subagent_type": "writer", "prompt": "say hi"})).await;
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
    let call: ToolCall = serde_json::from_value(args)
        .map_err(|e| format!("invalid SubAgent arguments: {e}; see the tool's schema"))?;
    match call {
        ToolCall::Create(a) => verbs::create(engine, parent, a).await,
        ToolCall::List(_) => verbs::list(engine, parent).await,
        ToolCall::Get(a) => verbs::get(engine, parent, a).await,
        ToolCall::Update(a) => verbs::update(engine, parent, a).await,
        ToolCall::Run(a) => verbs::run(engine, parent, a).await,
        ToolCall::SendMessage(a) => verbs::send_message(engine, parent, a).await,
        ToolCall::Cancel(a) => verbs::cancel(engine, parent, a).await,
        ToolCall::Delete(a) => verbs::delete(engine, parent, a).await,
    }
}

/// The JSON schema of the tool's arguments, generated from the same types the parser reads.
/// Subschemas are inlined: tool interfaces of model providers often do not
/// follow `$ref`.
pub fn schema() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<ToolCall>();
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// The tool description a parent model is given: name, purpose and schema.
pub fn description() -> Value {
    json!({
        "name": NAME,
        "description": "Create and manage child sessions (sub-agents): create, list, get, update, run, send_message, cancel, delete. Each child runs in its own worker; its completion arrives as a sub_agent_completed event.",
        "parameters": schema(),
    })
}

#[cfg(test)]
mod tests;
