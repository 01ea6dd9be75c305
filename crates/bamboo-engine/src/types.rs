//! Typed inputs and results of the child actions.
// Behaviours: C1-C8.

use bamboo_domain::{ChildStatus, LastTool, ModelRef, Role, Session, TaskList, TokenBudget};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Input of `create_child`.
// Behaviours: C1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateChild {
    /// The parent session (the caller).
    pub parent_id: String,
    /// Title; defaults to the start of the assignment.
    #[serde(default)]
    pub title: Option<String>,
    /// Sub-agent type.
    #[serde(default)]
    pub role: String,
    /// What the child is responsible for.
    #[serde(default)]
    pub responsibility: String,
    /// The assignment: becomes the first user message.
    pub assignment: String,
    /// Model override; default is the parent's.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// Reasoning effort (never inherited).
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// Workspace override; default is the parent's.
    #[serde(default)]
    pub workspace: Option<String>,
    /// System prompt override; default is the role's prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Tools hidden from the child.
    #[serde(default)]
    pub disabled_tools: Vec<String>,
    /// Watchdog total-time cap for this child, seconds.
    #[serde(default)]
    pub run_timeout_secs: Option<u64>,
    /// Watchdog idle cap for this child, seconds.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Most model rounds one run may take; default: the executor's.
    // Behaviours: C11.
    #[serde(default)]
    pub max_rounds: Option<u32>,
    /// A read-only reviewer: its write and command tools are refused.
    // Behaviours: C11.
    #[serde(default)]
    pub read_only: bool,
    /// Budget: most tokens over all the child's runs (cancelled past it).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Budget: most cost in USD over all the child's runs (cancelled past it).
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// `worktree`: run in a git worktree of its own on a branch
    /// `bamboo/<title>` (the workspace must be in a git repository).
    #[serde(default)]
    pub isolation: Option<crate::worktree::Isolation>,
    /// Queue a run right away.
    #[serde(default)]
    pub auto_run: bool,
    /// Where the child runs; default: the engine's routing by role.
    #[serde(default)]
    pub placement: Option<bamboo_subagent::spec::Placement>,
}

impl CreateChild {
    /// A child of `parent_id` with `assignment` and defaults elsewhere.
    pub fn new(parent_id: impl Into<String>, assignment: impl Into<String>) -> Self {
        Self {
            parent_id: parent_id.into(),
            assignment: assignment.into(),
            ..Self::default()
        }
    }
}

/// Input of `update_child`. At least one field must be set.
// Behaviours: C4.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateChild {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New responsibility.
    #[serde(default)]
    pub responsibility: Option<String>,
    /// New system prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// New role.
    #[serde(default)]
    pub role: Option<String>,
    /// New reasoning effort.
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// New assignment: replaces the last user message.
    #[serde(default)]
    pub assignment: Option<String>,
    /// Keep the messages after the rewritten assignment (default: drop them).
    #[serde(default)]
    pub keep_later_messages: bool,
}

impl UpdateChild {
    /// True when the update changes what the assignment renders from.
    // Behaviours: C4.
    pub(crate) fn rewrites_assignment(&self) -> bool {
        self.responsibility.is_some() || self.role.is_some() || self.assignment.is_some()
    }

    /// The first field set to a blank string, by its tool name.
    // Behaviours: C4.
    pub(crate) fn blank_field(&self) -> Option<&'static str> {
        let fields = [
            ("title", &self.title),
            ("responsibility", &self.responsibility),
            ("system_prompt", &self.system_prompt),
            ("subagent_type", &self.role),
            ("reasoning_effort", &self.reasoning_effort),
            ("prompt", &self.assignment),
        ];
        fields
            .into_iter()
            .find(|(_, v)| v.as_deref().is_some_and(|v| v.trim().is_empty()))
            .map(|(name, _)| name)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.responsibility.is_none()
            && self.system_prompt.is_none()
            && self.role.is_none()
            && self.reasoning_effort.is_none()
            && self.assignment.is_none()
    }
}

/// Input of `send_message`.
// Behaviours: C6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The message.
    pub text: String,
    /// Cancel a running run first, then start a new one with the message.
    #[serde(default)]
    pub interrupt: bool,
    /// When idle, run after appending (default true).
    #[serde(default = "yes")]
    pub run: bool,
}

fn yes() -> bool {
    true
}

impl SendMessage {
    /// A plain message: steer if running, else append and run.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            interrupt: false,
            run: true,
        }
    }
}

/// What `send_message` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SendOutcome {
    /// The child was running: the message was queued durably and, when
    /// `in_band`, also delivered to the live worker.
    Steered {
        /// Delivered to the live worker.
        in_band: bool,
    },
    /// The child's run was still queued: the message joins its transcript.
    JoinedQueuedRun,
    /// Appended to an idle child.
    Appended {
        /// A run was queued.
        run_queued: bool,
    },
    /// The running run was cancelled and awaited, then the message was
    /// appended as to an idle child.
    Interrupted {
        /// A run was queued.
        run_queued: bool,
    },
}

/// A child in a list.
// Behaviours: C2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildSummary {
    /// Child id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Role.
    pub role: String,
    /// Persisted status.
    pub status: ChildStatus,
    /// A run is queued or in flight now.
    pub running: bool,
    /// Last error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Last time the child session was written.
    pub updated_at: DateTime<Utc>,
    /// What its runs used so far, when its executor counts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<bamboo_domain::TokenUsage>,
}

/// What a live run adds to a child's stored state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Live {
    /// A run is queued or in flight.
    pub running: bool,
    /// When its last event arrived.
    pub last_event: Option<DateTime<Utc>>,
    /// Pid of its worker.
    pub worker_pid: Option<u32>,
    /// Its last tool event.
    pub last_tool: Option<LastTool>,
    /// Its task list as it last reported it.
    pub task_list: Option<TaskList>,
}

/// One child in detail.
// Behaviours: C3.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildDetail {
    /// Child id.
    pub id: String,
    /// Parent id.
    pub parent_id: String,
    /// Title.
    pub title: String,
    /// Role.
    pub role: String,
    /// Responsibility.
    pub responsibility: String,
    /// The assignment (the parent's prompt, before rendering).
    // Behaviours: C1.
    pub assignment: String,
    /// Model the child talks to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Pinned by the user.
    pub pinned: bool,
    /// Persisted status.
    pub status: ChildStatus,
    /// Last error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Messages in the transcript.
    pub message_count: usize,
    /// The text of the last user message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_user_message: Option<String>,
    /// Messages kept durably (in the child's inbox) until a run takes them.
    // Behaviours: C6.
    pub pending_messages: usize,
    /// A run is queued or in flight now.
    pub running: bool,
    /// When the last run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the last run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When the last child event arrived (live while running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// Last time the child session was written.
    pub updated_at: DateTime<Utc>,
    /// Runs so far.
    pub round_count: u32,
    /// Spawn depth.
    pub depth: u32,
    /// The last assistant message, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// Pid of the worker serving the live run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_pid: Option<u32>,
    /// The last tool the child's run started or finished, and its phase:
    /// live while it runs, the last run's after.
    // Behaviours: C10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_tool: Option<LastTool>,
    /// Most model rounds a run may take; `None`: the executor's default.
    // Behaviours: C11.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// A read-only reviewer: its write and command tools are refused.
    // Behaviours: C11.
    pub read_only: bool,
    /// The project the child belongs to.
    // Behaviours: S5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
    /// Its context budget.
    // Behaviours: S4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<TokenBudget>,
    /// Its task list.
    // Behaviours: S4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_list: Option<TaskList>,
    /// What its runs used so far (tokens, cost, turns, tool calls), when
    /// its executor counts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<bamboo_domain::TokenUsage>,
    /// Its token budget over all runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Its cost budget in USD over all runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Its git worktree: branch, last commit and changed files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<crate::worktree::Worktree>,
    /// What the caller might do next, in one sentence.
    pub guidance: String,
}

impl ChildDetail {
    pub(crate) fn of(s: &Session, live: Live, inbox_pending: usize) -> Self {
        let running = live.running;
        let c = s
            .child
            .clone()
            .unwrap_or_else(|| bamboo_domain::ChildInfo::new("", ""));
        let last_of = |role: Role| {
            s.messages
                .iter()
                .rev()
                .find(|m| m.role == role)
                .map(|m| m.content.clone())
        };
        Self {
            id: s.id.clone(),
            parent_id: s.parent_id.clone().unwrap_or_default(),
            title: s.title.clone(),
            guidance: guidance(&c, running, inbox_pending),
            role: c.role,
            responsibility: c.responsibility,
            assignment: c.assignment,
            model: s.model.clone(),
            pinned: s.pinned,
            status: c.status,
            last_error: c.last_error,
            message_count: s.messages.len(),
            latest_user_message: last_of(Role::User),
            pending_messages: c.pending_messages.len() + inbox_pending,
            running,
            started_at: c.started_at,
            completed_at: c.completed_at,
            last_event_at: live.last_event.or(c.last_event_at),
            updated_at: s.updated_at,
            round_count: c.round_count,
            depth: s.spawn_depth,
            last_result: last_of(Role::Assistant),
            worker_pid: live.worker_pid,
            last_tool: live.last_tool.or(c.last_tool),
            max_rounds: c.max_rounds,
            read_only: c.read_only,
            project_key: s.project_key.clone(),
            token_budget: s.token_budget,
            task_list: live.task_list.or_else(|| s.task_list.clone()),
            usage: s
                .metadata
                .contains_key(crate::usage::USAGE_KEY)
                .then(|| crate::usage::totals(s)),
            max_tokens: c.max_tokens,
            max_cost_usd: c.max_cost_usd,
            worktree: crate::worktree::of(s),
        }
    }

    /// The list view of this child.
    pub fn summary(&self) -> ChildSummary {
        ChildSummary {
            id: self.id.clone(),
            title: self.title.clone(),
            role: self.role.clone(),
            status: self.status,
            running: self.running,
            last_error: self.last_error.clone(),
            updated_at: self.updated_at,
            usage: self.usage,
        }
    }
}

/// One sentence telling the parent what to do next, in the SubAgent
/// tool's verbs.
// Behaviours: C3.
fn guidance(c: &bamboo_domain::ChildInfo, running: bool, inbox_pending: usize) -> String {
    let pending = c.pending_messages.len() + inbox_pending;
    if running && pending > 0 {
        return format!("The child is running with {pending} message(s) waiting for its next turn boundary: wait for its sub_agent_completed event, or use action=cancel to stop it.");
    }
    if running {
        return "The child is running: wait for its sub_agent_completed event, steer it with action=send_message, or stop it with action=cancel.".into();
    }
    match c.status {
        ChildStatus::Pending => "The child has not run its latest input yet: use action=run to execute it.".into(),
        ChildStatus::Running => "The child is marked running but no run is live (the engine restarted): use action=run to run it again.".into(),
        ChildStatus::Completed => "The child completed: read its result with action=get, or use action=send_message to follow up.".into(),
        ChildStatus::Suspended => "The child suspended itself with its transcript kept: use action=run or action=send_message to resume it.".into(),
        ChildStatus::Cancelled => "The child was cancelled: use action=run to retry it in place, or action=delete to remove it.".into(),
        ChildStatus::Skipped => "The child had nothing to answer: use action=send_message to give it work.".into(),
        ChildStatus::Timeout => "The watchdog stopped the child: narrow the prompt with action=update, then use action=run again.".into(),
        ChildStatus::Error => format!(
            "The child failed ({}): fix the cause (action=update), then use action=run to retry in place.",
            c.last_error.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// Result of `cancel_child`.
// Behaviours: C7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CancelOutcome {
    /// A run was queued or in flight and has been cancelled.
    pub was_running: bool,
}

/// Result of `delete_child`.
// Behaviours: C8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeleteOutcome {
    /// A running child (or descendant) was cancelled first.
    pub cancelled_running: bool,
    /// Sessions removed (the child and its descendants).
    pub deleted: usize,
}

/// Result of `update_child`.
// Behaviours: C4.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateOutcome {
    /// The child after the update.
    pub child: ChildDetail,
    /// Messages dropped after the rewritten assignment.
    pub messages_removed: usize,
}

/// Result of `retry_child`: the run is queued.
// Behaviours: C5.
#[derive(Debug)]
pub struct Retry {
    /// Messages dropped after the last user message.
    pub messages_removed: usize,
    /// Resolves when the queued run reports.
    pub ticket: crate::spawn::RunTicket,
}
