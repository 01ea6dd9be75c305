//! Approvals reach a person: the `approvals` tool lists and answers the open
//! requests of this root's descendants, and for a client that declared
//! elicitation each request is also put to the person as an elicitation
//! (accept approves; decline or cancel denies). A request nobody answers is
//! denied at the engine's approval timeout (fail closed).

use bamboo_engine::{Engine, PendingApproval};
use futures::StreamExt;
use rmcp::model::{ElicitRequestParams, ElicitationAction};
use rmcp::{Peer, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// One call of the `approvals` tool, tagged by `action`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ApprovalsArgs {
    /// List the open requests of this session's children (oldest first).
    List {},
    /// Answer one open request.
    Answer {
        /// The request's id, as `list` shows it.
        request_id: String,
        /// true lets the action proceed; false denies it.
        approved: bool,
    },
}

/// Runs one `approvals` call for `root`; `Err` is a message for the caller.
pub fn call(engine: &Engine, root: &str, args: ApprovalsArgs) -> Result<Value, String> {
    match args {
        ApprovalsArgs::List {} => {
            let open: Vec<Value> = engine
                .pending_approvals(Some(root))
                .iter()
                .map(describe)
                .collect();
            Ok(json!({"count": open.len(), "approvals": open}))
        }
        ApprovalsArgs::Answer {
            request_id,
            approved,
        } => {
            // C9: only requests from under this root can be answered here.
            let under = engine
                .pending_approvals(Some(root))
                .iter()
                .any(|p| p.id == request_id);
            if !under {
                return Err(format!(
                    "no open approval request {request_id} under this session: it was answered, expired or withdrawn, or belongs to another session; call approvals with action=list"
                ));
            }
            engine
                .answer_approval(&request_id, approved)
                .map_err(|e| e.to_string())?;
            Ok(json!({"request_id": request_id, "approved": approved}))
        }
    }
}

fn describe(p: &PendingApproval) -> Value {
    json!({
        "request_id": p.id,
        "child_session_id": p.child_session_id,
        "tool_name": p.tool_name,
        "permission": p.permission,
        "resource": p.resource,
        "question": p.question,
        "created_at": p.created_at.to_rfc3339(),
        "expires_at": p.expires_at.to_rfc3339(),
    })
}

/// Puts every open and new request under `root` to the person at the client
/// as an elicitation, until `stop`. Each request is asked on its own task, so
/// one unanswered dialog does not hold back the next request.
pub async fn elicit_each(
    engine: Engine,
    root: String,
    peer: Peer<RoleServer>,
    stop: CancellationToken,
) {
    let mut requests = engine.approval_requests(Some(&root));
    loop {
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            next = requests.next() => match next {
                Some(r) => r,
                None => return,
            },
        };
        let engine = engine.clone();
        let peer = peer.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = ask(&engine, &peer, &request) => {}
            }
        });
    }
}

/// One elicitation; the answer goes to the engine. When the client cannot
/// answer (an error), the request stays open for the `approvals` tool.
async fn ask(engine: &Engine, peer: &Peer<RoleServer>, request: &PendingApproval) {
    let params = serde_json::from_value::<ElicitRequestParams>(json!({
        "message": message(request),
        "requestedSchema": {"type": "object", "properties": {}},
    }));
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build an approval elicitation; the request waits in the approvals tool");
            return;
        }
    };
    let approved = match peer.create_elicitation(params).await {
        Ok(answer) => matches!(answer.action, ElicitationAction::Accept),
        Err(e) => {
            tracing::info!(error = %e, request = %request.id, "the client did not answer the approval elicitation; the request waits in the approvals tool");
            return;
        }
    };
    // Already answered (the approvals tool won the race), expired or
    // withdrawn: the child has its answer; nothing to do.
    if let Err(e) = engine.answer_approval(&request.id, approved) {
        tracing::debug!(error = %e, "approval answered elsewhere first");
    }
}

/// What the person reads: who asks, for which tool, on what.
fn message(r: &PendingApproval) -> String {
    let mut text = format!(
        "A sub-agent ({}) asks to use {} ({}) on: {}",
        r.child_session_id, r.tool_name, r.permission, r.resource
    );
    if !r.question.trim().is_empty() {
        text.push('\n');
        text.push_str(r.question.trim());
    }
    text.push_str("\nAccept to allow it; decline to deny it.");
    text
}
