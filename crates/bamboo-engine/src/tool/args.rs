//! The SubAgent tool's argument types, with the reference's names
//! (`shared/subagent-tool.md`). The JSON schema is derived from these same
//! types, so the schema and the parser cannot drift.

use schemars::JsonSchema;
use serde::Deserialize;

/// One call of the SubAgent tool, tagged by `action`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ToolCall {
    /// Create a child session (and by default run it).
    Create(CreateArgs),
    /// List this session's children.
    List(ListArgs),
    /// One child in detail, with guidance on what to do next.
    Get(ChildArgs),
    /// Change a child in place.
    Update(UpdateArgs),
    /// Run a child again, in place.
    Run(RunArgs),
    /// Send a child a follow-up message.
    SendMessage(SendArgs),
    /// Cancel a child's run and wait for it.
    Cancel(ChildArgs),
    /// Delete a child (cancelling its run first).
    Delete(ChildArgs),
}

fn yes() -> bool {
    true
}

/// Arguments of `create`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct CreateArgs {
    /// Short title of the child session.
    pub title: String,
    /// What the child is responsible for.
    pub responsibility: String,
    /// The child's role (sub-agent type).
    pub subagent_type: String,
    /// The assignment: what the child should do.
    pub prompt: String,
    /// `provider/model`, or a bare model name at the parent's provider.
    #[serde(default)]
    pub model: Option<String>,
    /// Reasoning effort hint (`low`, `medium`, `high`).
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// System prompt override; default is the role's prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Working directory override; default is the parent's.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Run the child right away (default true).
    #[serde(default = "yes")]
    pub auto_run: bool,
    /// Tools hidden from the child.
    #[serde(default)]
    pub disabled_tools: Vec<String>,
    /// Most model rounds one run of the child may take (at least 1); default:
    /// the child executor's own limit.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_rounds: Option<u32>,
    /// Budget: most tokens (in, out and cache) over all the child's runs;
    /// past it the child is cancelled, the error naming the budget.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u64>,
    /// Budget: most cost in US dollars over all the child's runs, where its
    /// executor reports cost; past it the child is cancelled.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// `worktree`: the child works in a git worktree of its own, on a new
    /// branch `bamboo/<title>` from HEAD; its changes are committed there
    /// and reported (the workspace must be in a git repository).
    #[serde(default)]
    pub isolation: Option<crate::worktree::Isolation>,
    /// Make the child a read-only reviewer: it may read and run read-only
    /// commands, and its writes are refused (default false).
    #[serde(default)]
    pub read_only: bool,
}

/// Arguments of `list` (none).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct ListArgs {}

/// Arguments naming one child (`get`, `cancel`, `delete`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ChildArgs {
    /// The child session's id.
    pub child_session_id: String,
}

/// Arguments of `update`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct UpdateArgs {
    /// The child session's id.
    pub child_session_id: String,
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New responsibility (re-renders the assignment).
    #[serde(default)]
    pub responsibility: Option<String>,
    /// New assignment (re-renders the assignment).
    #[serde(default)]
    pub prompt: Option<String>,
    /// New role (re-renders the assignment).
    #[serde(default)]
    pub subagent_type: Option<String>,
    /// New reasoning effort.
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// Drop the messages after the re-rendered assignment (default true).
    #[serde(default = "yes")]
    pub reset_after_update: bool,
}

/// Arguments of `run`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct RunArgs {
    /// The child session's id.
    pub child_session_id: String,
    /// Drop the messages after the last user message first (default true).
    #[serde(default = "yes")]
    pub reset_to_last_user: bool,
}

/// Arguments of `send_message`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SendArgs {
    /// The child session's id.
    pub child_session_id: String,
    /// The message (non-blank).
    pub message: String,
    /// Run an idle child after appending (default true).
    #[serde(default = "yes")]
    pub auto_run: bool,
    /// Cancel a running child first, then append and run (default false).
    #[serde(default)]
    pub interrupt_running: bool,
}
