//! The `wait` tool: block, within a bound, until one of the given children
//! of this root is no longer running, reporting each child's phase and token
//! count as MCP progress meanwhile; then return every given child's status
//! and result.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bamboo_domain::AgentEvent;
use bamboo_engine::{Engine, Since};
use futures::StreamExt;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Wait used when the caller gives no bound.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait a call may ask for: clients time tool calls out.
const LONGEST_WAIT: Duration = Duration::from_secs(600);
/// At most one progress notification per child event burst in this window
/// (a phase change is always reported at once).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Arguments of `wait`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// The children to wait for (default: every running child of this session).
    #[serde(default)]
    pub child_session_ids: Vec<String>,
    /// The longest wait in seconds (default 60, at most 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// Where progress goes: the client's peer and the request's progress token.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The client.
    pub peer: Peer<RoleServer>,
    /// The token the client gave with the call.
    pub token: ProgressToken,
}

/// What one child is doing, for progress messages.
#[derive(Debug, Clone, Default)]
struct Live {
    phase: String,
    tokens: u64,
}

/// Runs `wait` for `root`; `Err` is a message for the caller.
pub async fn wait(
    engine: &Engine,
    root: &str,
    args: WaitArgs,
    progress: Option<Progress>,
    cancelled: CancellationToken,
) -> Result<Value, String> {
    let bound = args
        .timeout_secs
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(LONGEST_WAIT);
    let ids = match args.child_session_ids.is_empty() {
        false => args.child_session_ids,
        true => engine
            .list_children(root)
            .await
            .map_err(|e| format!("cannot list this session's children: {e}"))?
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.id)
            .collect(),
    };
    // Subscribed before the first look: an end between the look and the
    // subscription cannot be missed.
    let mut events = engine.events(root, Since::Now);
    let mut live: HashMap<String, Live> =
        ids.iter().map(|id| (id.clone(), Live::default())).collect();
    let deadline = tokio::time::Instant::now() + bound;
    let mut sent = 0u64;
    let mut last_sent = Instant::now() - PROGRESS_EVERY;
    loop {
        let children = look(engine, root, &ids, &live).await?;
        let ended: Vec<Value> = children
            .iter()
            .filter(|c| c["is_running"] == false)
            .map(|c| c["child_session_id"].clone())
            .collect();
        if !ended.is_empty() || ids.is_empty() {
            return Ok(json!({"ended": ended, "timed_out": false, "children": children}));
        }
        // The first report comes at once: the caller learns the wait is on
        // and where each child stands before any of them moves.
        if let Some(p) = &progress {
            for state in live.values_mut() {
                if state.phase.is_empty() {
                    state.phase = "running".into();
                }
            }
            // A request asked before this wait began shows in its first report.
            for open in engine.pending_approvals(Some(root)) {
                if let Some(state) = live.get_mut(&open.child_session_id) {
                    state.phase = format!("waiting for approval of {}", open.tool_name);
                }
            }
            sent += 1;
            last_sent = Instant::now();
            notify(p, sent, &live).await;
        }
        // Until a given child's run ends (then look again) or the bound.
        let timed_out = loop {
            let logged = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break true,
                _ = cancelled.cancelled() => return Err("wait was cancelled by the client".into()),
                next = events.next() => match next {
                    Some(logged) => logged,
                    None => return Err("the engine is shutting down; nothing more will end".into()),
                },
            };
            let Some((child, change)) = change_of(&logged.event) else {
                continue;
            };
            let Some(state) = live.get_mut(child) else {
                continue;
            };
            let phase_changed = change.apply(state);
            if matches!(change, Change::Ended) {
                break false;
            }
            if let Some(p) = &progress {
                if phase_changed || last_sent.elapsed() >= PROGRESS_EVERY {
                    sent += 1;
                    last_sent = Instant::now();
                    notify(p, sent, &live).await;
                }
            }
        };
        if timed_out {
            let children = look(engine, root, &ids, &live).await?;
            let ended: Vec<Value> = children
                .iter()
                .filter(|c| c["is_running"] == false)
                .map(|c| c["child_session_id"].clone())
                .collect();
            let timed_out = ended.is_empty();
            return Ok(json!({"ended": ended, "timed_out": timed_out, "children": children}));
        }
    }
}

/// What an event means for the child it is about.
#[derive(Debug)]
enum Change {
    Phase(String),
    Tokens(u64),
    Usage(u64),
    Ended,
}

impl Change {
    /// Applies the change; true when the phase changed.
    fn apply(&self, state: &mut Live) -> bool {
        match self {
            Change::Phase(p) => {
                let changed = state.phase != *p;
                state.phase.clone_from(p);
                changed
            }
            Change::Tokens(n) => {
                state.tokens += n;
                if state.phase != "generating" {
                    state.phase = "generating".into();
                    return true;
                }
                false
            }
            Change::Usage(total) => {
                state.tokens = (*total).max(state.tokens);
                false
            }
            Change::Ended => {
                state.phase = "ended".into();
                true
            }
        }
    }
}

fn change_of(event: &AgentEvent) -> Option<(&str, Change)> {
    match event {
        AgentEvent::SubAgentStarted {
            child_session_id, ..
        } => Some((child_session_id, Change::Phase("started".into()))),
        AgentEvent::SubAgentCompleted {
            child_session_id, ..
        } => Some((child_session_id, Change::Ended)),
        AgentEvent::ChildApprovalRequested {
            child_session_id,
            tool_name,
            ..
        } => Some((
            child_session_id,
            Change::Phase(format!("waiting for approval of {tool_name}")),
        )),
        AgentEvent::SubAgentEvent {
            child_session_id,
            event,
            ..
        } => {
            let change = match &**event {
                AgentEvent::Token { .. } => Change::Tokens(1),
                AgentEvent::ToolStart { tool_name, .. } => {
                    Change::Phase(format!("running tool {tool_name}"))
                }
                AgentEvent::ToolComplete { .. } | AgentEvent::ToolError { .. } => {
                    Change::Phase("thinking".into())
                }
                AgentEvent::Complete { usage: Some(u) } => Change::Usage(u.total_tokens),
                _ => return None,
            };
            Some((child_session_id, change))
        }
        _ => None,
    }
}

/// Each given child now: status, result, and what the wait saw of it.
async fn look(
    engine: &Engine,
    root: &str,
    ids: &[String],
    live: &HashMap<String, Live>,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // C9: a child of another root is "not a child of this session".
        let d = engine.get_child(root, id).await.map_err(|e| {
            format!("cannot wait for {id}: {e} (only children of this session can be waited for)")
        })?;
        let state = live.get(id).cloned().unwrap_or_default();
        out.push(json!({
            "child_session_id": d.id,
            "title": d.title,
            "status": d.status,
            "is_running": d.running,
            "result": d.last_result,
            "error": d.last_error,
            "phase": if d.running { state.phase } else { "ended".into() },
            "tokens": state.tokens,
        }));
    }
    Ok(out)
}

/// One progress notification naming every child's phase and token count.
async fn notify(p: &Progress, n: u64, live: &HashMap<String, Live>) {
    let mut parts: Vec<String> = live
        .iter()
        .map(|(id, l)| {
            let phase = if l.phase.is_empty() {
                "queued"
            } else {
                &l.phase
            };
            format!("{}: {phase}, {} tokens", short(id), l.tokens)
        })
        .collect();
    parts.sort();
    let param = serde_json::from_value::<ProgressNotificationParam>(json!({
        "progressToken": p.token,
        "progress": n as f64,
        "message": parts.join("; "),
    }));
    match param {
        Ok(param) => {
            if let Err(e) = p.peer.notify_progress(param).await {
                tracing::debug!(error = %e, "cannot send a progress notification");
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot build a progress notification"),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
