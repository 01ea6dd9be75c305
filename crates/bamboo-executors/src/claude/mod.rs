//! The `claude_code` executor: Claude Code as the child's engine, driven over
//! its stream-json protocol (see [`protocol`]).
//!
//! - The agent starts in the workspace as `claude -p --input-format
//!   stream-json --output-format stream-json --verbose
//!   --include-partial-messages --replay-user-messages
//!   --permission-prompt-tool stdio --permission-mode MODE`, the permission
//!   mode always explicit (`default` unless the spec names one), plus
//!   `--model`, `--max-turns` (the spec's `limits.max_rounds`) and
//!   `--resume ID` when the run request carries the agent's session id of
//!   an earlier run of the same child.
//! - The assignment is its first stdin line; each steering message becomes
//!   one more user line while it runs. The run ends at a `result` once the
//!   agent has taken in every line written (it echoes each back), and stdin
//!   is closed so the agent exits.
//! - Text, tool calls and tool results become events; every `can_use_tool`
//!   question becomes one approval request through the run's host bridge,
//!   answered back as a `control_response` (a denial, a host that cannot
//!   answer, or a cancel deny it with the reason).
//! - Cancel sends an interrupt, then ends the agent's process group (and
//!   cgroup leaf) within [`KILL_GRACE`].
//! - The agent's environment is the worker's minus secrets, plus only its
//!   own `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`. Unless the spec sets
//!   `inherit_user_config`, it gets a private `HOME` and config directory
//!   and `--strict-mcp-config --setting-sources project`, so the user's own
//!   Claude setup does not leak into a child.

pub mod protocol;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::{AgentEvent, Role, TerminalStatus, TokenUsage};
use bamboo_subagent::executor::{ApprovalBody, Executor, RunContext, RunOutcome, RunRequest};
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};
use bamboo_subagent::Secret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::env::{child_env, pass_through};
use super::host::{ask_host, Approval};
use super::proc::tree::RunMark;
use super::proc::{read_tail, spawn_agent, RunProcesses, KILL_GRACE};
use protocol::{Action, Question, Translator};

/// How much of stderr's tail an error carries.
const STDERR_TAIL_BYTES: usize = 4096;

/// Why a `claude_code` spec cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaudeConfigError {
    /// The spec is not a `claude_code` spec.
    #[error("executor kind {0:?} is not claude_code")]
    WrongKind(&'static str),
    /// `binary` is blank.
    #[error("claude_code.binary is empty: give the path of the claude program, or leave it out to use `claude` from PATH")]
    EmptyBinary,
    /// A read-only reviewer was asked for.
    #[error("capabilities.guardian_read_only cannot be enforced for a claude_code child: use permission_mode \"plan\", or bamboo_runtime")]
    ReadOnly,
}

/// Runs Claude Code per assignment. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct ClaudeExecutor {
    binary: String,
    model: Option<String>,
    permission_mode: String,
    inherit_user_config: bool,
    forward_env: Vec<String>,
    passed: std::collections::BTreeMap<String, Secret>,
    workspace: Option<PathBuf>,
    key: Option<Secret>,
    base_url: Option<String>,
    max_turns: Option<u32>,
    max_cost_usd: Option<f64>,
    run_timeout: Option<Duration>,
    /// The private home of an isolated agent (kept across runs, so a later
    /// run can resume the agent's session).
    home: PathBuf,
    /// Permission questions go to the host; otherwise they are allowed.
    ask: bool,
}

impl ClaudeExecutor {
    /// Builds the executor from a `claude_code` spec.
    pub fn from_spec(spec: &ProvisionSpec) -> Result<Self, ClaudeConfigError> {
        let ExecutorSpec::ClaudeCode(c) = &spec.executor else {
            return Err(ClaudeConfigError::WrongKind(spec.executor.kind().wire()));
        };
        if spec.capabilities.guardian_read_only {
            return Err(ClaudeConfigError::ReadOnly);
        }
        if c.binary.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err(ClaudeConfigError::EmptyBinary);
        }
        let cred = spec
            .model
            .as_ref()
            .and_then(|m| spec.secrets.credential_for(&m.provider));
        let model = c.model.clone().or_else(|| {
            spec.model
                .as_ref()
                .map(|m| m.model.clone())
                .filter(|m| m != "default")
        });
        let home = match &spec.storage_dir {
            Some(dir) => PathBuf::from(dir).join("claude-home"),
            None => std::env::temp_dir().join("bamboo-claude-home"),
        };
        Ok(Self {
            binary: c.binary.clone().unwrap_or_else(|| "claude".into()),
            model,
            permission_mode: c
                .permission_mode
                .clone()
                .unwrap_or_else(|| "default".into()),
            inherit_user_config: c.inherit_user_config.unwrap_or(false),
            forward_env: c.forward_env.clone().unwrap_or_default(),
            passed: spec.secrets.pass_env.clone(),
            workspace: spec.workspace.as_ref().map(PathBuf::from),
            key: cred.map(|c| c.api_key.clone()),
            base_url: cred.and_then(|c| c.base_url.clone()),
            max_turns: spec.limits.max_rounds,
            max_cost_usd: spec.limits.max_cost_usd,
            run_timeout: spec.limits.run_timeout_secs.map(Duration::from_secs),
            home,
            ask: spec.capabilities.enforce_permissions && !spec.capabilities.bypass,
        })
    }

    /// The agent's arguments for a run resuming `session` (if any).
    pub fn args(&self, session: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--replay-user-messages",
            "--permission-prompt-tool",
            "stdio",
            "--permission-mode",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(self.permission_mode.clone());
        if let Some(m) = &self.model {
            args.extend(["--model".into(), m.clone()]);
        }
        if let Some(n) = self.max_turns {
            args.extend(["--max-turns".into(), n.to_string()]);
        }
        if let Some(usd) = self.max_cost_usd {
            args.extend(["--max-budget-usd".into(), format!("{usd:.6}")]);
        }
        if let Some(id) = session {
            args.extend(["--resume".into(), id.to_owned()]);
        }
        if !self.inherit_user_config {
            args.extend(["--strict-mcp-config", "--setting-sources", "project"].map(str::to_owned));
        }
        args
    }

    /// The agent's environment: the worker's minus secrets, its own key and
    /// base URL, the forwarded and passed variables, and a private home
    /// unless it inherits the user's config.
    fn env(&self) -> Result<Vec<(OsString, OsString)>, String> {
        let mut env = child_env(std::env::vars_os(), None);
        for name in &self.forward_env {
            if let Some(v) = std::env::var_os(name) {
                env.retain(|(n, _)| n.to_str() != Some(name.as_str()));
                env.push((name.into(), v));
            }
        }
        pass_through(&mut env, &self.passed);
        let mut set = |name: &str, value: OsString| {
            env.retain(|(n, _)| n.to_str() != Some(name));
            env.push((name.into(), value));
        };
        if let Some(key) = &self.key {
            // The one secret the agent gets: its own provider's key.
            set("ANTHROPIC_API_KEY", key.expose().into());
        }
        if let Some(url) = &self.base_url {
            set("ANTHROPIC_BASE_URL", url.trim_end_matches("/v1").into());
        }
        set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into());
        if !self.inherit_user_config {
            std::fs::create_dir_all(self.home.join(".claude")).map_err(|e| {
                format!(
                    "cannot create claude_code's private home {}: {e}: check that the storage directory is writable",
                    self.home.display()
                )
            })?;
            set("HOME", self.home.clone().into());
            set("CLAUDE_CONFIG_DIR", self.home.join(".claude").into());
        }
        Ok(env)
    }

    fn spawn(
        &self,
        session: Option<&str>,
        mark: &RunMark,
    ) -> Result<(Child, RunProcesses), String> {
        let env = self.env()?;
        spawn_agent(
            "claude_code",
            &self.binary,
            &self.args(session),
            &env,
            self.workspace.as_deref(),
            mark,
            "install Claude Code (npm install @anthropic-ai/claude-code) or give its path with --agent-bin / claude_code.binary",
        )
    }

    async fn run_agent(&self, request: RunRequest, mut ctx: RunContext) -> RunOutcome {
        let session = request.agent_session_id.clone();
        let mark = RunMark::fresh();
        let (mut child, procs) = match self.spawn(session.as_deref(), &mark) {
            Ok(c) => c,
            Err(e) => return RunOutcome::error(e),
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return RunOutcome::error("claude_code: the agent's stdin/stdout were not captured");
        };
        let stderr = child
            .stderr
            .take()
            .map(|e| tokio::spawn(read_tail(e, STDERR_TAIL_BYTES)));
        let (writer, lines_tx) = Writer::start(stdin);
        let first = if session.is_none() {
            first_message(&request)
        } else {
            request.assignment.clone()
        };
        let _ = lines_tx.send(Line::Text(protocol::user_line(&first)));
        let mut sent = 1usize;
        let abort = ctx.cancel.child_token();
        let deadline = self.run_timeout.map(|d| Instant::now() + d);
        let mut reader = BufReader::new(stdout).lines();
        let mut tr = Translator::default();
        let stop = loop {
            tokio::select! {
                biased;
                _ = abort.cancelled() => break Some(Stop::Cancelled),
                _ = until(deadline) => break Some(Stop::TimedOut),
                line = reader.next_line() => {
                    let line = match line {
                        Ok(Some(l)) => l,
                        Ok(None) | Err(_) => break None,
                    };
                    let mut ended = false;
                    for action in tr.line(&line) {
                        match action {
                            Action::Emit(ev) => {
                                if ctx.events.emit(ev).await.is_err() {
                                    abort.cancel();
                                }
                            }
                            Action::Ask(q) => self.answer(q, &ctx, &abort, &lines_tx),
                            Action::Refuse { request_id, subtype } => {
                                let _ = lines_tx.send(Line::Text(protocol::refusal(&request_id, &subtype)));
                            }
                            Action::TurnEnded => ended = tr.replays >= sent,
                        }
                    }
                    if ended {
                        // Every line written was taken in: close stdin, so the
                        // agent exits once it is done.
                        let _ = lines_tx.send(Line::Close);
                    }
                }
                Some(text) = ctx.steering.recv() => {
                    sent += 1;
                    let _ = lines_tx.send(Line::Text(protocol::user_line(&text)));
                }
            }
        };
        match stop {
            Some(stop) => {
                // Ask it to stop its turn first; the group goes within the grace anyway.
                let _ = lines_tx.send(Line::Text(protocol::interrupt_line(&format!(
                    "bamboo-interrupt-{}",
                    uuid::Uuid::new_v4()
                ))));
                let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                procs.terminate(&mut child).await;
                writer.abort();
                match stop {
                    Stop::Cancelled => RunOutcome::cancelled(),
                    Stop::TimedOut => RunOutcome::error(format!(
                        "claude_code run timed out after {} s: raise --run-timeout (limits.run_timeout_secs) or shorten the assignment",
                        self.run_timeout.map_or(0, |d| d.as_secs())
                    )),
                }
            }
            None => {
                let status = child.wait().await;
                procs.finish().await;
                writer.abort();
                let tail = match stderr {
                    Some(t) => tokio::time::timeout(KILL_GRACE, t)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default(),
                    None => String::new(),
                };
                self.conclude(tr, status, &tail, &ctx).await
            }
        }
    }

    /// Puts a permission question to the host in its own task (the agent
    /// waits for the answer; its output is still read meanwhile).
    fn answer(
        &self,
        q: Question,
        ctx: &RunContext,
        abort: &CancellationToken,
        lines: &mpsc::UnboundedSender<Line>,
    ) {
        let lines = lines.clone();
        if !self.ask {
            let _ = lines.send(Line::Text(protocol::permission_answer(&q, Ok(()))));
            return;
        }
        let host = ctx.events.host().cloned();
        let cancel = abort.clone();
        tokio::spawn(async move {
            let resource = q.resource();
            let body = ApprovalBody {
                tool_name: q.tool_name.clone(),
                permission_type: q.permission_type().into(),
                question: match &q.description {
                    Some(d) => format!("May Claude Code run {} `{resource}` ({d})?", q.tool_name),
                    None => format!("May Claude Code run {} `{resource}`?", q.tool_name),
                },
                resource,
            };
            let verdict = match ask_host(host, &cancel, body).await {
                Approval::Granted => Ok(()),
                Approval::Denied(why) => {
                    Err(format!("The user did not allow this action ({why})."))
                }
                Approval::Cancelled => {
                    Err("The run was cancelled before the action was approved.".into())
                }
            };
            let _ = lines.send(Line::Text(protocol::permission_answer(&q, verdict)));
        });
    }

    async fn conclude(
        &self,
        tr: Translator,
        status: std::io::Result<std::process::ExitStatus>,
        stderr_tail: &str,
        ctx: &RunContext,
    ) -> RunOutcome {
        if ctx.cancel.is_cancelled() {
            return RunOutcome::cancelled();
        }
        let usage = TokenUsage {
            cost_usd: tr.totals.cost_usd,
            turns: tr.totals.turns,
            tool_calls: tr.totals.tool_calls,
            ..tr.totals.usage
        };
        let mut outcome = match (&tr.result, &tr.failure) {
            (_, Some(failure)) => RunOutcome::error(match failure.as_str() {
                "error_max_turns" => format!(
                    "budget max_turns exceeded: Claude Code stopped after {} turns (max_turns {}): raise --max-turns",
                    tr.totals.turns,
                    self.max_turns.map_or_else(|| "?".into(), |n| n.to_string())
                ),
                "error_max_budget_usd" => format!(
                    "budget max_cost_usd exceeded: Claude Code stopped at ${:.6} (its --max-budget-usd was ${:.6}): raise --max-cost",
                    tr.totals.cost_usd.unwrap_or(0.0),
                    self.max_cost_usd.unwrap_or(0.0)
                ),
                other => format!("claude_code run failed: {other}"),
            }),
            (Some(result), None) => RunOutcome::completed(result.clone()),
            (None, None) => {
                let how = match &status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                let mut msg = format!("claude_code program {:?} ended ({how}) without a result", self.binary);
                if !stderr_tail.trim().is_empty() {
                    msg.push_str("; stderr tail:\n");
                    msg.push_str(stderr_tail.trim_end());
                }
                RunOutcome::error(msg)
            }
        };
        if outcome.status == TerminalStatus::Completed
            && ctx
                .events
                .emit(AgentEvent::Complete { usage: Some(usage) })
                .await
                .is_err()
        {
            return RunOutcome::cancelled();
        }
        outcome.usage = Some(usage);
        outcome.agent_session_id = tr.session_id;
        outcome
    }
}

enum Stop {
    Cancelled,
    TimedOut,
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The first user line of a run with no agent session to resume: the
/// assignment, after the earlier conversation when the child has one (so a
/// child first run elsewhere keeps its context).
fn first_message(request: &RunRequest) -> String {
    let earlier: Vec<String> = request
        .messages
        .iter()
        .take(request.messages.len().saturating_sub(1))
        .filter(|m| !m.content.trim().is_empty())
        .map(|m| {
            let who = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
                _ => "note",
            };
            format!("{who}: {}", m.content)
        })
        .collect();
    if earlier.is_empty() {
        request.assignment.clone()
    } else {
        format!(
            "Earlier conversation of this task:\n{}\n\nNow: {}",
            earlier.join("\n"),
            request.assignment
        )
    }
}

/// What the stdin writer is told.
enum Line {
    Text(String),
    Close,
}

/// Writes stdin lines in order from one task, so the reader, the steering
/// and the approval tasks never interleave a line.
struct Writer(tokio::task::JoinHandle<()>);

impl Writer {
    fn start(mut stdin: ChildStdin) -> (Self, mpsc::UnboundedSender<Line>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Line>();
        let task = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                match line {
                    Line::Text(mut t) => {
                        t.push('\n');
                        if stdin.write_all(t.as_bytes()).await.is_err() {
                            break;
                        }
                        let _ = stdin.flush().await;
                    }
                    Line::Close => break,
                }
            }
            let _ = stdin.shutdown().await;
        });
        (Self(task), tx)
    }

    fn abort(self) {
        self.0.abort();
    }
}

#[async_trait]
impl Executor for ClaudeExecutor {
    async fn run(&self, request: RunRequest, ctx: RunContext) -> RunOutcome {
        self.run_agent(request, ctx).await
    }
}

/// Builds the registry entry for a `claude_code` spec.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, ClaudeConfigError> {
    Ok(Arc::new(ClaudeExecutor::from_spec(spec)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(executor: serde_json::Value) -> ProvisionSpec {
        let v = serde_json::json!({"identity": {"child_id": "c"}, "executor": executor,
            "fabric_dir": "/f", "limits": {"max_rounds": 2, "max_cost_usd": 0.5}});
        ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("spec")
    }

    #[test]
    fn args_are_explicit_isolated_and_resume_the_session() {
        let e = ClaudeExecutor::from_spec(&spec(
            serde_json::json!({"kind": "claude_code", "model": "m"}),
        ))
        .unwrap();
        let args = e.args(Some("s-1")).join(" ");
        assert!(
            args.contains("--permission-prompt-tool stdio --permission-mode default"),
            "{args}"
        );
        assert!(
            args.contains("--model m --max-turns 2 --max-budget-usd 0.500000 --resume s-1"),
            "{args}"
        );
        assert!(
            args.ends_with("--strict-mcp-config --setting-sources project"),
            "{args}"
        );
        let inherit = ClaudeExecutor::from_spec(&spec(
            serde_json::json!({"kind": "claude_code", "inherit_user_config": true, "permission_mode": "acceptEdits"}),
        ))
        .unwrap();
        let args = inherit.args(None).join(" ");
        assert!(
            !args.contains("strict-mcp") && !args.contains("--resume"),
            "{args}"
        );
        assert!(args.contains("--permission-mode acceptEdits"), "{args}");
    }
}
