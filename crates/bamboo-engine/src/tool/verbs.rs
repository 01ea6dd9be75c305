//! One function per SubAgent verb: reference arguments in, the typed engine
//! call, reference result fields, statuses and notes out
//! (`shared/subagent-tool.md`).

use bamboo_domain::{ChildStatus, ModelRef};
use serde_json::{json, Value};

use super::args::{ChildArgs, CreateArgs, RunArgs, SendArgs, UpdateArgs};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::types::{ChildDetail, CreateChild, SendMessage, SendOutcome, UpdateChild};

/// Note of a successful `update`.
pub const NOTE_UPDATED: &str =
    "Child session updated in place. Use action=run to execute the same child session.";
/// Note of `run` on a running child.
// Behaviours: C5.
pub const NOTE_ALREADY_RUNNING: &str = "Child session is already running.";
/// Note of a queued `run`.
pub const NOTE_RETRY_QUEUED: &str = "Queued existing child session for retry in place.";
/// Note of `send_message` steered to a running child.
// Behaviours: C6.
pub const NOTE_MESSAGE_QUEUED: &str = "Message queued for the child session. It will be picked up at the next turn boundary without canceling current progress.";
/// Note of `send_message` appended and run.
pub const NOTE_APPENDED_QUEUED: &str = "Follow-up message appended and child session queued.";
/// Note of `send_message` appended without a run.
pub const NOTE_APPENDED_IDLE: &str =
    "Follow-up message appended. Use action=run to execute the child session.";
/// The error of an `update` that changes nothing.
// Behaviours: C4.
pub const UPDATE_NEEDS_A_FIELD: &str =
    "update requires at least one field: title/responsibility/prompt/subagent_type/reasoning_effort";

type Out = Result<Value, String>;

fn err(e: EngineError) -> String {
    e.to_string()
}

/// A required string: blank counts as missing.
fn required(name: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{name} is required and must not be blank"));
    }
    Ok(())
}

fn model_text(m: &Option<ModelRef>) -> Value {
    m.as_ref().map_or(Value::Null, |m| {
        json!(format!("{}/{}", m.provider, m.model))
    })
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

/// `create`: creates a child.
// Behaviours: C1.
pub async fn create(engine: &Engine, parent: &str, a: CreateArgs) -> Out {
    for (name, value) in [
        ("title", &a.title),
        ("responsibility", &a.responsibility),
        ("subagent_type", &a.subagent_type),
        ("prompt", &a.prompt),
    ] {
        required(name, value)?;
    }
    let model = match a.model.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(resolve_model(engine, parent, m).await?),
    };
    let input = CreateChild {
        parent_id: parent.to_owned(),
        title: Some(a.title),
        role: a.subagent_type,
        responsibility: a.responsibility,
        assignment: a.prompt,
        model,
        reasoning_effort: a.reasoning_effort.filter(|e| !e.trim().is_empty()),
        workspace: a.workspace.filter(|w| !w.trim().is_empty()),
        system_prompt: a.system_prompt.filter(|p| !p.trim().is_empty()),
        disabled_tools: a.disabled_tools,
        max_rounds: a.max_rounds,
        max_tokens: a.max_tokens,
        max_cost_usd: a.max_cost_usd,
        isolation: a.isolation,
        read_only: a.read_only,
        auto_run: a.auto_run,
        ..CreateChild::default()
    };
    let child = engine.create_child(input).await.map_err(err)?;
    Ok(json!({"child_session_id": child.id, "model": model_text(&child.model)}))
}

/// `provider/model`, or a bare model at the parent's provider.
async fn resolve_model(engine: &Engine, parent: &str, text: &str) -> Result<ModelRef, String> {
    if let Some(m) = ModelRef::parse(text) {
        return Ok(m);
    }
    let session = engine.session(parent).await.map_err(err)?;
    let provider = session.and_then(|s| s.model).map(|m| m.provider);
    match provider {
        Some(provider) if !text.contains('/') => Ok(ModelRef {
            provider,
            model: text.to_owned(),
        }),
        _ => Err(format!(
            "model {text:?} names no provider and the parent has none to inherit: use provider/model"
        )),
    }
}

/// `list`: the caller's children.
// Behaviours: C2.
pub async fn list(engine: &Engine, parent: &str) -> Out {
    let kids = engine.list_children(parent).await.map_err(err)?;
    let children: Vec<Value> = kids
        .iter()
        .map(|k| {
            let mut v = json!({
                "child_session_id": k.id,
                "title": k.title,
                "subagent_type": k.role,
                "last_run_status": k.status,
                "last_run_error": k.last_error,
                "is_running": k.running,
                "updated_at": k.updated_at.to_rfc3339(),
            });
            // Extension (C14): present only when the child's runs reported it.
            if let Some(u) = &k.usage {
                v["usage"] = json!(u);
            }
            v
        })
        .collect();
    Ok(json!({"parent_session_id": parent, "count": children.len(), "children": children}))
}

/// `get`: one child in detail.
// Behaviours: C3.
pub async fn get(engine: &Engine, parent: &str, a: ChildArgs) -> Out {
    required("child_session_id", &a.child_session_id)?;
    let d = engine
        .get_child(parent, &a.child_session_id)
        .await
        .map_err(err)?;
    Ok(detail_json(&d))
}

fn detail_json(d: &ChildDetail) -> Value {
    let mut v = detail_reference_json(d);
    // Extensions (C12, C13, C14): present only when set.
    for (key, value) in [
        ("usage", d.usage.as_ref().map(|u| json!(u))),
        ("worktree", d.worktree.as_ref().map(|w| json!(w))),
        ("max_tokens", d.max_tokens.map(|n| json!(n))),
        ("max_cost_usd", d.max_cost_usd.map(|c| json!(c))),
    ] {
        if let Some(value) = value {
            v[key] = value;
        }
    }
    v
}

/// The reference's `get` fields.
fn detail_reference_json(d: &ChildDetail) -> Value {
    json!({
        "child_session_id": d.id,
        "title": d.title,
        "model": model_text(&d.model),
        "pinned": d.pinned,
        "message_count": d.message_count,
        "is_running": d.running,
        "last_run_status": d.status,
        "last_run_error": d.last_error,
        "responsibility": d.responsibility,
        "subagent_type": d.role,
        "prompt": d.assignment,
        "latest_user_message": d.latest_user_message,
        "runtime_kind": "actor_worker",
        "external_protocol": null,
        "external_agent_id": null,
        "a2a_context_id": null,
        "a2a_latest_task_id": null,
        "a2a_last_state": null,
        "runner_started_at": time(d.started_at),
        "runner_completed_at": time(d.completed_at),
        "last_tool_name": d.last_tool.as_ref().map(|t| t.name.clone()),
        "last_tool_phase": d.last_tool.as_ref().map(|t| t.phase),
        "last_event_at": time(d.last_event_at),
        "round_count": d.round_count,
        "has_pending_injected_messages": d.pending_messages > 0,
        "last_result": d.last_result,
        "guidance": d.guidance,
    })
}

/// `update`: changes a child's fields.
// Behaviours: C4.
pub async fn update(engine: &Engine, parent: &str, a: UpdateArgs) -> Out {
    required("child_session_id", &a.child_session_id)?;
    let u = UpdateChild {
        title: a.title,
        responsibility: a.responsibility,
        system_prompt: None,
        role: a.subagent_type,
        reasoning_effort: a.reasoning_effort,
        assignment: a.prompt,
        keep_later_messages: !a.reset_after_update,
    };
    if u.is_empty() {
        return Err(UPDATE_NEEDS_A_FIELD.into());
    }
    let out = engine
        .update_child(parent, &a.child_session_id, u)
        .await
        .map_err(err)?;
    Ok(json!({
        "child_session_id": out.child.id,
        "title": out.child.title,
        "messages_removed": out.messages_removed,
        "last_run_status": out.child.status,
        "note": NOTE_UPDATED,
    }))
}

/// `run`: a running child is a normal result, not an error.
// Behaviours: C5.
pub async fn run(engine: &Engine, parent: &str, a: RunArgs) -> Out {
    required("child_session_id", &a.child_session_id)?;
    let id = a.child_session_id;
    match engine.retry_child(parent, &id, a.reset_to_last_user).await {
        Ok(retry) => Ok(json!({
            "child_session_id": id,
            "status": "queued",
            "messages_removed": retry.messages_removed,
            "note": NOTE_RETRY_QUEUED,
        })),
        Err(EngineError::AlreadyRunning(_)) => Ok(already_running(&id)),
        Err(e) => Err(err(e)),
    }
}

fn already_running(id: &str) -> Value {
    json!({"child_session_id": id, "status": "already_running", "note": NOTE_ALREADY_RUNNING})
}

/// `send_message`: steers or messages a child.
// Behaviours: C6.
pub async fn send_message(engine: &Engine, parent: &str, a: SendArgs) -> Out {
    required("child_session_id", &a.child_session_id)?;
    required("message", &a.message)?;
    let id = a.child_session_id;
    let msg = SendMessage {
        text: a.message.clone(),
        interrupt: a.interrupt_running,
        run: a.auto_run,
    };
    let outcome = engine.send_message(parent, &id, msg).await.map_err(err)?;
    let count = engine
        .get_child(parent, &id)
        .await
        .map_err(err)?
        .message_count;
    let (status, auto_run, note) = match outcome {
        SendOutcome::Steered { .. } => ("message_queued", false, NOTE_MESSAGE_QUEUED),
        SendOutcome::JoinedQueuedRun => ("queued", true, NOTE_APPENDED_QUEUED),
        SendOutcome::Appended { run_queued: true }
        | SendOutcome::Interrupted { run_queued: true } => ("queued", true, NOTE_APPENDED_QUEUED),
        SendOutcome::Appended { run_queued: false }
        | SendOutcome::Interrupted { run_queued: false } => {
            ("pending", a.auto_run, NOTE_APPENDED_IDLE)
        }
    };
    Ok(json!({
        "child_session_id": id,
        "status": status,
        "auto_run": auto_run,
        "message": a.message,
        "message_count": count,
        "note": note,
    }))
}

/// `cancel`: stops a child.
// Behaviours: C7.
pub async fn cancel(engine: &Engine, parent: &str, a: ChildArgs) -> Out {
    required("child_session_id", &a.child_session_id)?;
    engine
        .cancel_child(parent, &a.child_session_id)
        .await
        .map_err(err)?;
    Ok(json!({"child_session_id": a.child_session_id, "status": ChildStatus::Cancelled}))
}

/// `delete`: removes a child and its descendants.
// Behaviours: C8.
pub async fn delete(engine: &Engine, parent: &str, a: ChildArgs) -> Out {
    required("child_session_id", &a.child_session_id)?;
    let out = engine
        .delete_child(parent, &a.child_session_id)
        .await
        .map_err(err)?;
    Ok(json!({
        "child_session_id": a.child_session_id,
        "deleted": true,
        "cancelled_running_child": out.cancelled_running,
    }))
}
