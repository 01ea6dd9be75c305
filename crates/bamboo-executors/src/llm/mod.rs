//! The `bamboo_runtime` executor: an agent loop over any OpenAI-compatible
//! chat-completions endpoint.
//!
//! Each round streams one completion (`stream: true`, usage requested), emits
//! `token` events as text arrives, runs the tool calls the model asked for
//! (emitting `tool_start` / `tool_complete` / `tool_error`) and feeds their
//! results back as `tool` messages, until the model answers without tools (its
//! text is the result) or `limits.max_rounds` is reached (an error). Steering
//! messages are admitted as user messages before each round. The run's prior
//! transcript (`messages`) starts the conversation; the assignment follows as a
//! user message unless the transcript already ends with it.
//!
//! The outcome's `transcript` is the whole conversation after the run (prior
//! messages included, the built-in system prompt excluded), compressed where
//! the run compressed it.
//!
//! With a `token_budget` in the run, the conversation is kept within it
//! (`context`); with a `task_list`, the list is shown to the model after the
//! system prompt and the `task_list` tool changes it (`tasks`).

pub mod client;
pub mod context;
pub mod guardian;
pub mod sse;
pub mod tasks;
#[cfg(test)]
mod tests;
pub mod tools;
pub mod workspace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::{AgentEvent, Message, Role, TaskList, TokenBudget, TokenUsage};
use bamboo_subagent::executor::{Executor, RunContext, RunOutcome, RunRequest};
use bamboo_subagent::spec::ProvisionSpec;
use serde_json::{json, Value};
use tokio::time::Instant;

use client::{ChatClient, LlmError, RetryPolicy};
use sse::{ChunkOutcome, SseParser, ToolCall, Turn};
use tools::{ToolOutcome, ToolPolicy, Toolbox};
use workspace::Workspace;

/// Base URL used when the credential names none.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Model rounds per run when `limits.max_rounds` is not set.
pub const DEFAULT_MAX_ROUNDS: u32 = 20;
/// Environment variable overriding the retry base delay, in milliseconds
/// (for fast tests of a worker binary).
pub const RETRY_BASE_ENV: &str = "BAMBOO_LLM_RETRY_BASE_MS";

/// Why the executor cannot talk to a model. Reported when a run starts.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LlmConfigError {
    /// The spec has no `model`.
    #[error("bamboo_runtime needs a model: set the spec's \"model\" to {{\"provider\":\"...\",\"model\":\"...\"}}")]
    MissingModel,
    /// No credential for the model's provider.
    #[error("no credential for provider {0:?}: add {{\"provider\":{0:?},\"api_key\":\"...\"}} to secrets.provider_credentials")]
    MissingCredential(String),
    /// The HTTP client could not be set up.
    #[error("{0}")]
    Client(String),
}

/// The agent loop executor. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct LlmExecutor {
    client: Result<ChatClient, LlmConfigError>,
    model: String,
    policy: ToolPolicy,
    workspace: Option<PathBuf>,
    role: String,
    max_rounds: u32,
    run_timeout: Option<Duration>,
}

/// Builds the registry entry for a `bamboo_runtime` spec. Configuration
/// problems surface as the error of each run, so the parent sees them.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, LlmConfigError> {
    Ok(Arc::new(LlmExecutor::from_spec(spec)))
}

impl LlmExecutor {
    /// The executor a spec describes.
    pub fn from_spec(spec: &ProvisionSpec) -> Self {
        let retry = RetryPolicy {
            base_delay: std::env::var(RETRY_BASE_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(RetryPolicy::default().base_delay),
            ..RetryPolicy::default()
        };
        let model = spec
            .model
            .as_ref()
            .map(|m| m.model.clone())
            .unwrap_or_default();
        let client = match &spec.model {
            None => Err(LlmConfigError::MissingModel),
            Some(m) => match spec.secrets.credential_for(&m.provider) {
                None => Err(LlmConfigError::MissingCredential(m.provider.clone())),
                Some(cred) => ChatClient::new(
                    &m.provider,
                    &m.model,
                    cred.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
                    cred.api_key.clone(),
                    retry,
                )
                .map_err(|e| LlmConfigError::Client(e.to_string())),
            },
        };
        Self {
            client,
            model,
            policy: ToolPolicy::from_spec(spec),
            workspace: spec.workspace.as_ref().map(PathBuf::from),
            role: spec.identity.role.clone(),
            max_rounds: spec.limits.max_rounds.unwrap_or(DEFAULT_MAX_ROUNDS).max(1),
            run_timeout: spec.limits.run_timeout_secs.map(Duration::from_secs),
        }
    }

    /// Replaces the retry policy (tests and benchmarks use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.client = self.client.map(|c| c.with_retry(retry));
        self
    }

    /// Replaces how long a stream may stay silent before the run fails.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.client = self.client.map(|c| c.with_idle_timeout(idle));
        self
    }

    fn system_prompt(&self, ws: Option<&Workspace>) -> String {
        let mut s = String::from("You are a Bamboo sub-agent");
        if !self.role.is_empty() {
            s.push_str(&format!(" with the role {:?}", self.role));
        }
        s.push_str(
            ". Complete the user's assignment and answer with the final result as plain text.",
        );
        if let Some(ws) = ws {
            s.push_str(&format!(
                " Your workspace is {}; file paths are relative to it and tools cannot reach outside it.",
                ws.root().display()
            ));
        }
        s
    }

    async fn run_loop(
        &self,
        client: &ChatClient,
        request: RunRequest,
        ctx: &mut RunContext,
    ) -> RunOutcome {
        let ws = match &self.workspace {
            None => None,
            Some(p) => match Workspace::open(p) {
                Ok(ws) => Some(ws),
                Err(e) => {
                    return RunOutcome::error(format!(
                        "workspace {} cannot be used ({e}): create it or fix the spec's workspace",
                        p.display()
                    ))
                }
            },
        };
        if let Some(why) = request.token_budget.as_ref().and_then(TokenBudget::problem) {
            return RunOutcome::error(format!("the run's {why}"));
        }
        let system = self.system_prompt(ws.as_ref());
        let toolbox = Toolbox::new(&self.policy, ws);
        let mut conv = Conversation::start(system, request.messages, &request.assignment);
        conv.tasks = request.task_list;
        let mut usage: Option<TokenUsage> = None;
        for _round in 0..self.max_rounds {
            for text in ctx.steering.drain() {
                conv.messages.push(Message::user(text));
            }
            if let Some(budget) = &request.token_budget {
                if self.compress(client, &mut conv, budget, ctx).await.is_err() {
                    return RunOutcome::cancelled();
                }
            }
            let body =
                conv.request_body(&self.model, &toolbox, request.reasoning_effort.as_deref());
            let mut turn = match stream_turn(client, &body, ctx, true).await {
                Ok(t) => t,
                Err(LlmError::Cancelled) => return RunOutcome::cancelled(),
                Err(e) => return RunOutcome::error(e.to_string()),
            };
            if let Some(u) = turn.usage {
                let total = usage.get_or_insert_with(TokenUsage::default);
                total.prompt_tokens += u.prompt_tokens;
                total.completion_tokens += u.completion_tokens;
                total.total_tokens += u.total_tokens;
            }
            let calls = turn.finished_calls();
            conv.messages.push(assistant_message(&turn.content, &calls));
            if calls.is_empty() {
                if ctx
                    .events
                    .emit(AgentEvent::Complete { usage })
                    .await
                    .is_err()
                {
                    return RunOutcome::cancelled();
                }
                let mut out = RunOutcome::completed(turn.content);
                out.transcript = Some(conv.transcript());
                return out;
            }
            for call in &calls {
                match run_tool(&toolbox, &mut conv.tasks, call, ctx).await {
                    Some(msg) => conv.messages.push(msg),
                    None => return RunOutcome::cancelled(),
                }
            }
        }
        RunOutcome::error(format!(
            "reached limits.max_rounds ({}) without a final answer: raise limits.max_rounds or narrow the assignment",
            self.max_rounds
        ))
    }
}

impl LlmExecutor {
    /// F13: when the prompt passes the budget's trigger, folds older turns
    /// into the model's summary of them (or a marker when the model gives
    /// none) so the prompt gets below the target, and says so with a
    /// `context_compressed` event. `Err` only when the run was cancelled.
    async fn compress(
        &self,
        client: &ChatClient,
        conv: &mut Conversation,
        budget: &TokenBudget,
        ctx: &RunContext,
    ) -> Result<(), LlmError> {
        let fixed = conv.fixed_tokens();
        let before = fixed + context::prompt_tokens([], &conv.messages);
        if before <= budget.trigger_tokens() {
            return Ok(());
        }
        // Folding a single message (say, an earlier summary, when the system
        // prompt and assignment alone pass the trigger) would only ask the
        // model again every round for nothing.
        let Some(plan) =
            context::plan(&conv.messages, conv.keep, fixed, budget).filter(|p| p.fold.len() > 1)
        else {
            return Ok(());
        };
        let text = context::transcript_text(&conv.messages, &plan.fold);
        let summary = match self.summarise(client, &text, plan.room, budget, ctx).await {
            Ok(s) if !s.trim().is_empty() => Some(s),
            Err(LlmError::Cancelled) => return Err(LlmError::Cancelled),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not summarise older turns; cutting them instead");
                None
            }
        };
        let method = if summary.is_some() {
            "summary"
        } else {
            "truncated"
        };
        let folded = context::folded_message(summary.as_deref(), plan.fold.len(), plan.room);
        conv.keep = context::apply(&mut conv.messages, &plan.fold, folded, conv.keep);
        let event = AgentEvent::ContextCompressed {
            before_tokens: before,
            after_tokens: fixed + context::prompt_tokens([], &conv.messages),
            target_tokens: budget.target_tokens(),
            messages_compressed: plan.fold.len(),
            method: method.into(),
        };
        ctx.events
            .emit(event)
            .await
            .map_err(|_| LlmError::Cancelled)
    }

    /// Asks the model for a summary of `text` in about `room` tokens; its
    /// text is not streamed to the parent.
    async fn summarise(
        &self,
        client: &ChatClient,
        text: &str,
        room: u64,
        budget: &TokenBudget,
        ctx: &RunContext,
    ) -> Result<String, LlmError> {
        // The newest part of what is folded, if all of it would not fit the
        // window itself.
        let max_chars = (budget.max_context_tokens / 2 * 4) as usize;
        let skip = text.chars().count().saturating_sub(max_chars);
        let text: String = text.chars().skip(skip).collect();
        let words = (room * 3 / 4).max(20);
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": format!(
                    "You compress conversations. Summarise the conversation below in at most {words} words. Keep facts, decisions, file names, results and open questions; no preamble."
                )},
                {"role": "user", "content": text},
            ],
            "stream": true,
        });
        Ok(stream_turn(client, &body, ctx, false).await?.content)
    }
}

#[async_trait]
impl Executor for LlmExecutor {
    async fn run(&self, request: RunRequest, mut ctx: RunContext) -> RunOutcome {
        let client = match &self.client {
            Ok(c) => c,
            Err(e) => return RunOutcome::error(e.to_string()),
        };
        let Some(limit) = self.run_timeout else {
            return self.run_loop(client, request, &mut ctx).await;
        };
        let deadline = Instant::now() + limit;
        tokio::select! {
            out = self.run_loop(client, request, &mut ctx) => out,
            _ = tokio::time::sleep_until(deadline) => RunOutcome::error(format!(
                "bamboo_runtime run timed out after {} s: raise limits.run_timeout_secs or narrow the assignment",
                limit.as_secs()
            )),
        }
    }
}

/// Streams one completion, emitting its text as `token` events when `emit`.
async fn stream_turn(
    client: &ChatClient,
    body: &Value,
    ctx: &RunContext,
    emit: bool,
) -> Result<Turn, LlmError> {
    let mut response = client.open(body, &ctx.cancel, Some(&ctx.events)).await?;
    let mut parser = SseParser::default();
    let mut turn = Turn::default();
    let mut payloads = Vec::new();
    loop {
        let chunk = client.next_chunk(&mut response, &ctx.cancel).await?;
        let ended = match &chunk {
            Some(bytes) => {
                parser.feed(bytes, &mut payloads);
                false
            }
            None => {
                parser.finish(&mut payloads);
                true
            }
        };
        for payload in payloads.drain(..) {
            match turn.apply(&payload) {
                Ok(ChunkOutcome::Text(text)) if emit && !text.is_empty() => {
                    if ctx
                        .events
                        .emit(AgentEvent::Token { content: text })
                        .await
                        .is_err()
                    {
                        return Err(LlmError::Cancelled);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(match e.strip_prefix("provider error: ") {
                        Some(msg) => client.provider_error(msg),
                        None => client.malformed(e),
                    })
                }
            }
            if turn.done {
                return Ok(turn);
            }
        }
        if ended {
            if turn.finish_reason.is_some() {
                return Ok(turn);
            }
            return Err(client.malformed("the stream ended before [DONE]"));
        }
    }
}

/// Runs one tool call with its events; `None` when the run was cancelled.
/// `task_list` calls change `tasks` (when the run has a list) and are
/// followed by a `task_list_updated` event.
async fn run_tool(
    toolbox: &Toolbox,
    tasks: &mut Option<TaskList>,
    call: &ToolCall,
    ctx: &RunContext,
) -> Option<Message> {
    let parsed: Result<Value, String> = if call.arguments.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str(&call.arguments).map_err(|e| e.to_string())
    };
    let shown = parsed
        .clone()
        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
    let start = AgentEvent::ToolStart {
        tool_call_id: call.id.clone(),
        tool_name: call.name.clone(),
        arguments: shown,
    };
    ctx.events.emit(start).await.ok()?;
    let mut changed = None;
    let outcome = match (parsed, tasks.as_mut()) {
        (Ok(args), Some(list)) if call.name == tasks::NAME => match tasks::apply(list, &args) {
            Ok(text) => {
                changed = Some(list.clone());
                ToolOutcome::Ok(text)
            }
            Err(e) => ToolOutcome::Failed(e),
        },
        (Ok(args), _) => toolbox.call(&call.name, &args, ctx).await,
        (Err(e), _) => ToolOutcome::Failed(format!(
            "the arguments are not valid JSON ({e}): send a JSON object"
        )),
    };
    let (event, content) = match outcome {
        ToolOutcome::Cancelled => return None,
        ToolOutcome::Ok(result) => (
            AgentEvent::ToolComplete {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                result: result.clone(),
            },
            result,
        ),
        ToolOutcome::Failed(error) => (
            AgentEvent::ToolError {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                error: error.clone(),
            },
            error,
        ),
    };
    ctx.events.emit(event).await.ok()?;
    if let Some(task_list) = changed {
        let updated = AgentEvent::TaskListUpdated { task_list };
        ctx.events.emit(updated).await.ok()?;
    }
    let mut msg = Message::new(Role::Tool, content);
    msg.tool_call_id = Some(call.id.clone());
    Some(msg)
}

fn assistant_message(content: &str, calls: &[ToolCall]) -> Message {
    let mut msg = Message::assistant(content);
    if !calls.is_empty() {
        msg.tool_calls = Some(Value::Array(
            calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect(),
        ));
    }
    msg
}

/// The conversation of one run.
#[derive(Debug)]
struct Conversation {
    system: Option<String>,
    messages: Vec<Message>,
    /// Index of the assignment's message, which compression keeps.
    keep: Option<usize>,
    /// The run's task list, shown after the system prompt.
    tasks: Option<TaskList>,
}

impl Conversation {
    /// Prior transcript, then the assignment unless the transcript already
    /// ends with it; the built-in system prompt only when the transcript has none.
    fn start(system: String, prior: Vec<Message>, assignment: &str) -> Self {
        let has_system = prior.iter().any(|m| m.role == Role::System);
        let mut messages = prior;
        let already = messages
            .last()
            .is_some_and(|m| m.role == Role::User && m.content == assignment);
        if !already && !assignment.is_empty() {
            messages.push(Message::user(assignment));
        }
        let keep = messages.iter().rposition(|m| m.role == Role::User);
        Self {
            system: (!has_system).then_some(system),
            messages,
            keep,
            tasks: None,
        }
    }

    /// The estimated tokens of what the prompt carries besides `messages`.
    fn fixed_tokens(&self) -> u64 {
        let tasks = self.tasks.as_ref().map(tasks::prompt);
        context::prompt_tokens(
            self.system
                .iter()
                .map(String::as_str)
                .chain(tasks.as_deref()),
            &[],
        )
    }

    fn request_body(&self, model: &str, toolbox: &Toolbox, effort: Option<&str>) -> Value {
        let mut wire = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            wire.push(json!({"role": "system", "content": s}));
        }
        let tasks_at = self
            .messages
            .iter()
            .take_while(|m| m.role == Role::System)
            .count();
        let mut rest = self.messages.iter();
        wire.extend(rest.by_ref().take(tasks_at).map(wire_message));
        if let Some(list) = &self.tasks {
            wire.push(json!({"role": "system", "content": tasks::prompt(list)}));
        }
        wire.extend(rest.map(wire_message));
        let mut body = json!({
            "model": model,
            "messages": wire,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let mut tools = toolbox.definitions();
        if self.tasks.is_some() {
            tools.push(tasks::definition());
        }
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools);
        }
        if let Some(e) = effort {
            body["reasoning_effort"] = json!(e);
        }
        body
    }

    fn transcript(self) -> Vec<Message> {
        self.messages
    }
}

/// One domain message in the chat-completions shape.
fn wire_message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
        // A role from another implementation's transcript: shown as user text.
        Role::Other => "user",
    };
    let mut v = json!({"role": role, "content": m.content});
    if let Some(calls) = &m.tool_calls {
        v["tool_calls"] = calls.clone();
        if m.content.is_empty() {
            v["content"] = Value::Null;
        }
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}
