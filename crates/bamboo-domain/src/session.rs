//! Sessions (S1): a root conversation or a child sub-agent, with its transcript.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::budget::TokenBudget;
use crate::message::{Message, Role};
use crate::status::ChildStatus;
use crate::tasks::TaskList;
use crate::tool_phase::LastTool;

/// Identifier of a session.
pub type SessionId = String;

/// Whether a session is a root conversation or a sub-agent of another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A top-level session with no parent.
    Root,
    /// A sub-agent session owned by `parent_id`.
    Child,
}

/// A resolved model reference: which provider, which model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// Provider name, e.g. `openai`.
    pub provider: String,
    /// Model name at that provider.
    pub model: String,
}

impl ModelRef {
    /// Parses `provider/model`; `None` when either side is empty or the slash is missing.
    ///
    /// ```
    /// use bamboo_domain::ModelRef;
    /// let m = ModelRef::parse("openai/gpt-4o-mini").unwrap();
    /// assert_eq!((m.provider.as_str(), m.model.as_str()), ("openai", "gpt-4o-mini"));
    /// assert!(ModelRef::parse("gpt-4o").is_none());
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        let (provider, model) = s.split_once('/')?;
        if provider.is_empty() || model.is_empty() {
            return None;
        }
        Some(Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
}

/// What only a child session carries: its role, assignment and run state (S2, C3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// The sub-agent type (role) of the child.
    #[serde(default)]
    pub role: String,
    /// What the child is responsible for, in a line.
    #[serde(default)]
    pub responsibility: String,
    /// The assignment text it was given.
    #[serde(default)]
    pub assignment: String,
    /// Typed run status (S2).
    #[serde(default = "pending")]
    pub status: ChildStatus,
    /// Text of the last error, if the last run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When the last child event arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// How many runs this child has had.
    #[serde(default)]
    pub round_count: u32,
    /// Steering messages accepted while running, kept until a run consumes them
    /// so none is lost if the run ends first (C6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_messages: Vec<String>,
    /// Watchdog total-time cap override, seconds (E9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout_secs: Option<u64>,
    /// Watchdog idle cap override, seconds (E9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// The last tool the child's last run started or finished, and its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool: Option<LastTool>,
    /// Most model rounds one run may take (the worker's `limits.max_rounds`);
    /// `None`: the executor's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// A read-only reviewer: its write and command tools are refused
    /// (the worker's `capabilities.guardian_read_only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Budget: most tokens (in + out + cache) over all the child's runs;
    /// past it the run is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Budget: most cost in USD over all the child's runs; past it the run
    /// is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

fn pending() -> ChildStatus {
    ChildStatus::Pending
}

impl ChildInfo {
    /// Child info for a new child with the given role and assignment.
    pub fn new(role: impl Into<String>, assignment: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            responsibility: String::new(),
            assignment: assignment.into(),
            status: ChildStatus::Pending,
            last_error: None,
            started_at: None,
            completed_at: None,
            last_event_at: None,
            round_count: 0,
            pending_messages: Vec::new(),
            max_tokens: None,
            max_cost_usd: None,
            run_timeout_secs: None,
            idle_timeout_secs: None,
            last_tool: None,
            max_rounds: None,
            read_only: false,
        }
    }
}

/// A session: a conversation with its transcript and metadata (S1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Unique id.
    pub id: SessionId,
    /// Root or child.
    pub kind: SessionKind,
    /// The owning session, for a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<SessionId>,
    /// Human-readable title.
    #[serde(default)]
    pub title: String,
    /// Model and provider this session talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Working directory for file operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The transcript, oldest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Spawn depth: root 0, its children 1, ...
    #[serde(default)]
    pub spawn_depth: u32,
    /// Reasoning effort hint (`low`, `medium`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
    /// Pinned by the user.
    #[serde(default)]
    pub pinned: bool,
    /// The project this session belongs to (sessions are listed by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
    /// The context budget its runs keep their conversation within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<TokenBudget>,
    /// Its task list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_list: Option<TaskList>,
    /// Child-only state; `None` for a root session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildInfo>,
}

impl Session {
    /// A new root session with a fresh id.
    pub fn new_root(title: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            kind: SessionKind::Root,
            parent_id: None,
            title: title.into(),
            model: None,
            workspace: None,
            messages: Vec::new(),
            metadata: serde_json::Map::new(),
            spawn_depth: 0,
            reasoning_effort: None,
            created_at: now,
            updated_at: now,
            pinned: false,
            project_key: None,
            token_budget: None,
            task_list: None,
            child: None,
        }
    }

    /// A new child of `parent` with a fresh id, one level deeper, inheriting the
    /// parent's model, workspace, project and a copy of its task list, and its
    /// token budget compressed earlier and further (trigger 70 %, target
    /// 35 %); reasoning effort is not inherited (C1).
    pub fn new_child(parent: &Session, info: ChildInfo) -> Self {
        let mut s = Self::new_root(String::new());
        s.kind = SessionKind::Child;
        s.parent_id = Some(parent.id.clone());
        s.model = parent.model.clone();
        s.workspace = parent.workspace.clone();
        s.spawn_depth = parent.spawn_depth + 1;
        s.project_key = parent.project_key.clone();
        s.token_budget = parent.token_budget.as_ref().map(TokenBudget::for_child);
        s.task_list = parent.task_list.clone();
        s.child = Some(info);
        s
    }

    /// True when the last message is from the user, i.e. a run has work to do (E4).
    pub fn has_pending_user_message(&self) -> bool {
        self.messages.last().is_some_and(|m| m.role == Role::User)
    }

    /// Run status of a child; `None` for a root session.
    pub fn status(&self) -> Option<ChildStatus> {
        self.child.as_ref().map(|c| c.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_inherits_model_and_workspace_but_not_effort() {
        let mut p = Session::new_root("p");
        p.model = ModelRef::parse("openai/gpt");
        p.workspace = Some("/w".into());
        p.reasoning_effort = Some("high".into());
        p.spawn_depth = 1;
        let c = Session::new_child(&p, ChildInfo::new("researcher", "look"));
        assert_eq!(c.kind, SessionKind::Child);
        assert_eq!(c.parent_id.as_deref(), Some(p.id.as_str()));
        assert_eq!(c.model, p.model);
        assert_eq!(c.workspace.as_deref(), Some("/w"));
        assert_eq!(c.reasoning_effort, None);
        assert_eq!(c.spawn_depth, 2);
        assert_eq!(c.status(), Some(ChildStatus::Pending));
    }

    #[test]
    fn s4_child_gets_the_budget_at_70_35_the_task_list_and_the_project() {
        use crate::tasks::{TaskItem, TaskItemStatus};
        let mut p = Session::new_root("p");
        p.token_budget = Some(TokenBudget::new(32_000));
        p.project_key = Some("/src/app".into());
        p.task_list = Some(TaskList {
            items: vec![TaskItem {
                id: "1".into(),
                description: "plan".into(),
                status: TaskItemStatus::Pending,
            }],
        });
        let c = Session::new_child(&p, ChildInfo::new("r", "a"));
        let b = c.token_budget.expect("inherited budget");
        assert_eq!(b.max_context_tokens, 32_000);
        assert_eq!(
            (b.compression_trigger_percent, b.compression_target_percent),
            (70, 35)
        );
        assert_eq!(c.task_list, p.task_list);
        assert_eq!(c.project_key.as_deref(), Some("/src/app"));
    }

    #[test]
    fn s4_a_session_file_from_before_budgets_still_loads() {
        let old = r#"{"id":"x","kind":"child","parent_id":"p","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","child":{"role":"r","status":"completed"}}"#;
        let s: Session = serde_json::from_str(old).unwrap();
        assert_eq!(
            (s.token_budget, s.task_list, s.project_key),
            (None, None, None)
        );
        let c = s.child.unwrap();
        assert_eq!(
            (c.last_tool, c.max_rounds, c.read_only),
            (None, None, false)
        );
    }

    #[test]
    fn session_round_trips_through_json() {
        let p = Session::new_root("p");
        let mut c = Session::new_child(&p, ChildInfo::new("r", "a"));
        c.messages.push(Message::user("a"));
        let json = serde_json::to_string(&c).unwrap();
        let back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(back.has_pending_user_message());
        assert!(json.contains(r#""kind":"child""#));
        assert!(json.contains(r#""status":"pending""#));
    }
}
