//! `codex` in `app_server` mode: `codex app-server` driven over its
//! JSON-RPC on stdio (one JSON object a line, no `jsonrpc` field).
//!
//! `initialize`, then `thread/start` (or `thread/resume` with the thread an
//! earlier run of the child left) and `turn/start` with the assignment. Its
//! notifications become events (agent message deltas, command executions,
//! file changes, token usage); `turn/completed` ends the run. Every approval
//! request Codex sends (commands, file changes, in both protocol versions)
//! becomes one approval request through the run's host bridge, answered
//! accept or decline. A steering message becomes `turn/steer`; cancel sends
//! `turn/interrupt`, then ends the process group within the grace.

use bamboo_domain::{AgentEvent, TokenUsage};
use bamboo_subagent::executor::{ApprovalBody, RunContext, RunOutcome, RunRequest};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::CodexExecutor;
use crate::host::{ask_host, Approval};
use crate::proc::tree::RunMark;
use crate::proc::KILL_GRACE;

/// Request ids of the calls this client makes.
const INITIALIZE: u64 = 1;
const THREAD: u64 = 2;
const TURN: u64 = 3;

/// What the run has seen so far.
#[derive(Debug, Default)]
struct State {
    thread_id: Option<String>,
    turn_id: Option<String>,
    last_message: Option<String>,
    failure: Option<String>,
    usage: TokenUsage,
    done: bool,
    next_id: u64,
}

/// Runs one assignment through `codex app-server`.
pub async fn run(exec: &CodexExecutor, request: RunRequest, ctx: RunContext) -> RunOutcome {
    let mut ctx = ctx;
    let mark = RunMark::fresh();
    let mut args = vec!["app-server".to_owned()];
    args.extend(exec.config_args());
    let (mut child, procs) = match exec.spawn(args, &mark) {
        Ok(c) => c,
        Err(e) => return RunOutcome::error(e),
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return RunOutcome::error("codex app-server: its stdin/stdout were not captured");
    };
    let stderr = child
        .stderr
        .take()
        .map(|e| tokio::spawn(crate::proc::read_tail(e, super::STDERR_TAIL_BYTES)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            let mut line = v.to_string();
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            let _ = stdin.flush().await;
        }
    });
    let _ = tx.send(json!({"id": INITIALIZE, "method": "initialize",
        "params": {"clientInfo": {"name": "bamboo-worker", "version": env!("CARGO_PKG_VERSION")}}}));
    let mut st = State {
        next_id: 100,
        ..State::default()
    };
    let session = request.agent_session_id.clone();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = exec.run_timeout.map(|d| Instant::now() + d);
    let stop = loop {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => break Some(false),
            _ = super::until(deadline) => break Some(true),
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break None };
                let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
                for ev in handle(exec, &msg, &mut st, &tx, &ctx, &request, session.as_deref()) {
                    if ctx.events.emit(ev).await.is_err() {
                        ctx.cancel.cancel();
                    }
                }
                if st.done {
                    break None;
                }
            }
            Some(text) = ctx.steering.recv() => {
                if let (Some(thread), Some(turn)) = (&st.thread_id, &st.turn_id) {
                    st.next_id += 1;
                    let _ = tx.send(json!({"id": st.next_id, "method": "turn/steer", "params": {
                        "threadId": thread, "expectedTurnId": turn,
                        "input": [{"type": "text", "text": text}]}}));
                }
            }
        }
    };
    if let Some(timed_out) = stop {
        if let (Some(thread), Some(turn)) = (&st.thread_id, &st.turn_id) {
            let _ = tx.send(json!({"id": st.next_id + 1, "method": "turn/interrupt",
                "params": {"threadId": thread, "turnId": turn}}));
            let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        }
        procs.terminate(&mut child).await;
        writer.abort();
        return if timed_out {
            RunOutcome::error(format!(
                "codex run timed out after {} s: raise --run-timeout (limits.run_timeout_secs) or shorten the assignment",
                exec.run_timeout.map_or(0, |d| d.as_secs())
            ))
        } else {
            RunOutcome::cancelled()
        };
    }
    // The server serves until its stdin closes; the turn is over.
    drop(tx);
    let _ = tokio::time::timeout(KILL_GRACE, writer).await;
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        procs.terminate(&mut child).await;
    } else {
        procs.finish().await;
    }
    let tail = match stderr {
        Some(t) => tokio::time::timeout(KILL_GRACE, t)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    };
    conclude(st, &tail, &ctx).await
}

async fn conclude(st: State, stderr_tail: &str, ctx: &RunContext) -> RunOutcome {
    if ctx.cancel.is_cancelled() {
        return RunOutcome::cancelled();
    }
    let mut outcome = match (&st.failure, st.done) {
        (Some(f), _) => RunOutcome::error(format!("codex run failed: {f}")),
        (None, true) => RunOutcome::completed(st.last_message.clone().unwrap_or_default()),
        (None, false) => {
            let mut msg = "codex app-server ended before its turn completed".to_owned();
            if stderr_tail.trim().is_empty() {
                msg.push_str(": run `codex app-server` by hand to see why");
            } else {
                msg.push_str("; stderr tail:\n");
                msg.push_str(stderr_tail.trim_end());
            }
            RunOutcome::error(msg)
        }
    };
    if outcome.status == bamboo_domain::TerminalStatus::Completed
        && ctx
            .events
            .emit(AgentEvent::Complete {
                usage: Some(st.usage),
            })
            .await
            .is_err()
    {
        return RunOutcome::cancelled();
    }
    outcome.usage = Some(st.usage);
    outcome.agent_session_id = st.thread_id;
    outcome
}

/// Handles one message from the server: responses to our calls, its
/// requests (approvals), its notifications (events).
fn handle(
    exec: &CodexExecutor,
    msg: &Value,
    st: &mut State,
    tx: &mpsc::UnboundedSender<Value>,
    ctx: &RunContext,
    request: &RunRequest,
    session: Option<&str>,
) -> Vec<AgentEvent> {
    let method = msg["method"].as_str();
    match (msg.get("id"), method) {
        (Some(id), Some(method)) => {
            answer_request(id.clone(), method, &msg["params"], tx, ctx);
            Vec::new()
        }
        (Some(id), None) => {
            if let Some(err) = msg.get("error") {
                st.failure = Some(format!(
                    "codex app-server refused a call: {}",
                    err["message"].as_str().unwrap_or("error")
                ));
                st.done = true;
                return Vec::new();
            }
            match id.as_u64() {
                Some(INITIALIZE) => {
                    let _ = tx.send(json!({"method": "initialized"}));
                    let mut params = json!({});
                    if let Some(ws) = &exec.workspace {
                        params["cwd"] = json!(ws.display().to_string());
                    }
                    if let Some(m) = &exec.model {
                        params["model"] = json!(m);
                    }
                    if let Some(p) = &exec.approval_policy {
                        params["approvalPolicy"] = json!(p);
                    }
                    let method = match session {
                        Some(thread) => {
                            params["threadId"] = json!(thread);
                            "thread/resume"
                        }
                        None => "thread/start",
                    };
                    let _ = tx.send(json!({"id": THREAD, "method": method, "params": params}));
                }
                Some(THREAD) => {
                    st.thread_id = msg["result"]["thread"]["id"].as_str().map(str::to_owned);
                    let _ = tx.send(json!({"id": TURN, "method": "turn/start", "params": {
                        "threadId": st.thread_id,
                        "input": [{"type": "text", "text": request.assignment}]}}));
                }
                Some(TURN) => {
                    st.turn_id = msg["result"]["turn"]["id"].as_str().map(str::to_owned);
                }
                _ => {}
            }
            Vec::new()
        }
        (None, Some(method)) => notification(method, &msg["params"], st),
        (None, None) => Vec::new(),
    }
}

/// A server request: an approval goes to the host (in its own task: the
/// agent waits, its other messages are still read); anything else is
/// refused so the agent does not wait on it.
fn answer_request(
    id: Value,
    method: &str,
    params: &Value,
    tx: &mpsc::UnboundedSender<Value>,
    ctx: &RunContext,
) {
    // v2 answers accept/decline, v1 approved/denied.
    let (body, yes, no) = match method {
        "item/commandExecution/requestApproval" | "execCommandApproval" => {
            let command = match &params["command"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            let v1 = method == "execCommandApproval";
            (
                ApprovalBody {
                    tool_name: "command_execution".into(),
                    permission_type: "execute".into(),
                    question: format!("May Codex run `{command}`?"),
                    resource: command,
                },
                if v1 { "approved" } else { "accept" },
                if v1 { "denied" } else { "decline" },
            )
        }
        "item/fileChange/requestApproval" | "applyPatchApproval" => {
            let v1 = method == "applyPatchApproval";
            let what = params["reason"]
                .as_str()
                .or_else(|| params["grantRoot"].as_str())
                .unwrap_or("file changes")
                .to_owned();
            (
                ApprovalBody {
                    tool_name: "file_change".into(),
                    permission_type: "write".into(),
                    question: format!("May Codex apply {what}?"),
                    resource: what,
                },
                if v1 { "approved" } else { "accept" },
                if v1 { "denied" } else { "decline" },
            )
        }
        other => {
            let _ = tx.send(json!({"id": id, "error": {"code": -32601,
                "message": format!("{other} is not supported by this client")}}));
            return;
        }
    };
    let (host, cancel, tx) = (ctx.events.host().cloned(), ctx.cancel.clone(), tx.clone());
    tokio::spawn(async move {
        let decision = match ask_host(host, &cancel, body).await {
            Approval::Granted => yes,
            Approval::Denied(_) | Approval::Cancelled => no,
        };
        let _ = tx.send(json!({"id": id, "result": {"decision": decision}}));
    });
}

fn notification(method: &str, params: &Value, st: &mut State) -> Vec<AgentEvent> {
    let item = &params["item"];
    let id = item["id"].as_str().unwrap_or_default().to_owned();
    match (method, item["type"].as_str()) {
        ("item/agentMessage/delta", _) => params["delta"]
            .as_str()
            .filter(|d| !d.is_empty())
            .map(|d| vec![AgentEvent::token(d)])
            .unwrap_or_default(),
        ("item/completed", Some("agentMessage")) => {
            st.last_message = item["text"].as_str().map(str::to_owned);
            Vec::new()
        }
        ("item/started", Some("commandExecution")) => {
            st.usage.tool_calls += 1;
            vec![AgentEvent::ToolStart {
                tool_call_id: id,
                tool_name: "command_execution".into(),
                arguments: json!({"command": item["command"]}),
            }]
        }
        ("item/completed", Some("commandExecution")) => {
            let output = item["aggregatedOutput"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if item["status"] == "completed" && item["exitCode"].as_i64() == Some(0) {
                vec![AgentEvent::ToolComplete {
                    tool_call_id: id,
                    tool_name: "command_execution".into(),
                    result: output,
                }]
            } else {
                vec![AgentEvent::ToolError {
                    tool_call_id: id,
                    tool_name: "command_execution".into(),
                    error: format!(
                        "{} (exit code {}): {output}",
                        item["status"].as_str().unwrap_or("failed"),
                        item["exitCode"]
                    ),
                }]
            }
        }
        ("item/completed", Some("fileChange")) => {
            st.usage.tool_calls += 1;
            vec![
                AgentEvent::ToolStart {
                    tool_call_id: id.clone(),
                    tool_name: "file_change".into(),
                    arguments: json!({"changes": item["changes"]}),
                },
                AgentEvent::ToolComplete {
                    tool_call_id: id,
                    tool_name: "file_change".into(),
                    result: item["status"].as_str().unwrap_or_default().to_owned(),
                },
            ]
        }
        ("thread/tokenUsage/updated", _) => {
            let t = &params["tokenUsage"]["total"];
            let n = |k: &str| t[k].as_u64().unwrap_or(0);
            let cached = n("cachedInputTokens");
            st.usage.prompt_tokens = n("inputTokens").saturating_sub(cached);
            st.usage.cache_read_tokens = cached;
            st.usage.cache_write_tokens = n("cacheWriteInputTokens");
            st.usage.completion_tokens = n("outputTokens");
            st.usage.total_tokens = st.usage.prompt_tokens
                + cached
                + st.usage.cache_write_tokens
                + st.usage.completion_tokens;
            Vec::new()
        }
        ("turn/completed", _) => {
            st.usage.turns += 1;
            let turn = &params["turn"];
            if turn["status"] == "failed" {
                st.failure = Some(
                    turn["error"]["message"]
                        .as_str()
                        .unwrap_or("the turn failed")
                        .to_owned(),
                );
            }
            st.done = true;
            Vec::new()
        }
        ("error", _) => vec![AgentEvent::Error {
            message: params["error"]["message"]
                .as_str()
                .or_else(|| params["message"].as_str())
                .unwrap_or("error")
                .to_owned(),
        }],
        _ => Vec::new(),
    }
}
