//! [`Child`]: what [`crate::Engine::spawn`] creates, built call by call.

use std::time::Duration;

use bamboo_domain::ModelRef;
use bamboo_subagent::spec::Placement;

use crate::types::CreateChild;
use crate::worktree::Isolation;

/// A child to create under a parent session, with its assignment: hand it to
/// [`crate::Engine::spawn`]. It runs as soon as it is created unless
/// [`Child::pending`] says otherwise.
///
/// Everything left unset is inherited from the parent (model, workspace,
/// context budget, task list, project) or comes from the engine (the role's
/// system prompt, the watchdog limits, the placement routed for the role).
///
/// ```
/// use std::time::Duration;
/// use bamboo_engine::{Child, ModelRef};
///
/// let child = Child::new("parent-id", "summarise the report")
///     .title("summary")
///     .role("writer")
///     .model(ModelRef { provider: "openai".into(), model: "gpt-4o-mini".into() })
///     .run_timeout(Duration::from_secs(600))
///     .max_tokens(50_000);
/// # let _ = child;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a child does nothing until it is handed to Engine::spawn"]
pub struct Child {
    input: CreateChild,
}

impl Child {
    /// A child of `parent` (a session id) that will work on `assignment`
    /// (its first user message), and run as soon as it is created.
    pub fn new(parent: impl Into<String>, assignment: impl Into<String>) -> Self {
        let mut input = CreateChild::new(parent, assignment);
        input.auto_run = true;
        Self { input }
    }

    /// Creates the child without running it; start it with
    /// [`crate::ChildHandle::run`].
    pub fn pending(mut self) -> Self {
        self.input.auto_run = false;
        self
    }

    /// Its title (default: the start of the assignment). An explicit title
    /// is also shown to the child in its assignment.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.input.title = Some(title.into());
        self
    }

    /// Its role (sub-agent type): picks the role's system prompt and the
    /// placement routed for the role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.input.role = role.into();
        self
    }

    /// What the child is responsible for, shown in its assignment.
    pub fn responsibility(mut self, responsibility: impl Into<String>) -> Self {
        self.input.responsibility = responsibility.into();
        self
    }

    /// The model it talks to (default: the parent's).
    pub fn model(mut self, model: ModelRef) -> Self {
        self.input.model = Some(model);
        self
    }

    /// Its reasoning effort, e.g. `high` (never inherited).
    pub fn reasoning_effort(mut self, effort: impl Into<String>) -> Self {
        self.input.reasoning_effort = Some(effort.into());
        self
    }

    /// The directory it works in (default: the parent's).
    pub fn workspace(mut self, dir: impl Into<String>) -> Self {
        self.input.workspace = Some(dir.into());
        self
    }

    /// Its system prompt (default: the role's prompt).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.input.system_prompt = Some(prompt.into());
        self
    }

    /// Hides the tool `name` from the child (repeatable).
    pub fn disable_tool(mut self, name: impl Into<String>) -> Self {
        self.input.disabled_tools.push(name.into());
        self
    }

    /// Stops a run that takes longer than `limit` in total (rounded up to
    /// whole seconds; default: the engine's run timeout).
    pub fn run_timeout(mut self, limit: Duration) -> Self {
        self.input.run_timeout_secs = Some(whole_seconds(limit));
        self
    }

    /// Stops a run that shows no activity for `limit` (rounded up to whole
    /// seconds; default: the engine's idle timeout).
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.input.idle_timeout_secs = Some(whole_seconds(limit));
        self
    }

    /// The most model rounds one run may take (default: the executor's).
    pub fn max_rounds(mut self, rounds: u32) -> Self {
        self.input.max_rounds = Some(rounds);
        self
    }

    /// Makes it a read-only reviewer: its write and command tools are
    /// refused.
    pub fn read_only(mut self) -> Self {
        self.input.read_only = true;
        self
    }

    /// Cancels it once its runs have used more than `tokens` in total.
    pub fn max_tokens(mut self, tokens: u64) -> Self {
        self.input.max_tokens = Some(tokens);
        self
    }

    /// Cancels it once its runs have cost more than `usd` US dollars in
    /// total.
    pub fn max_cost_usd(mut self, usd: f64) -> Self {
        self.input.max_cost_usd = Some(usd);
        self
    }

    /// Runs it in a git worktree of its own, on a branch
    /// `bamboo/<title>` (its workspace must be inside a git repository).
    pub fn worktree(mut self) -> Self {
        self.input.isolation = Some(Isolation::Worktree);
        self
    }

    /// Where it runs (default: the engine's route for its role, else the
    /// engine's default placement).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.input.placement = Some(placement);
        self
    }

    /// The parent session's id.
    pub fn parent_id(&self) -> &str {
        &self.input.parent_id
    }

    pub(crate) fn into_input(self) -> CreateChild {
        self.input
    }
}

/// The builder's view of a [`CreateChild`] input (as the tool layer and
/// older code build it).
impl From<CreateChild> for Child {
    fn from(input: CreateChild) -> Self {
        Self { input }
    }
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelRef {
        ModelRef {
            provider: "openai".into(),
            model: "m".into(),
        }
    }

    #[test]
    fn runs_by_default_and_pending_does_not() {
        assert!(Child::new("p", "a").into_input().auto_run);
        assert!(!Child::new("p", "a").pending().into_input().auto_run);
    }

    #[test]
    fn every_field_of_the_input_is_reachable() {
        let got = Child::new("p", "do it")
            .title("t")
            .role("r")
            .responsibility("resp")
            .model(model())
            .reasoning_effort("high")
            .workspace("/w")
            .system_prompt("sys")
            .disable_tool("a")
            .disable_tool("b")
            .run_timeout(Duration::from_millis(1500))
            .idle_timeout(Duration::from_secs(7))
            .max_rounds(3)
            .read_only()
            .max_tokens(100)
            .max_cost_usd(0.5)
            .worktree()
            .placement(Placement::Schedulable { pool: "gpu".into() })
            .pending()
            .into_input();
        let want = CreateChild {
            parent_id: "p".into(),
            title: Some("t".into()),
            role: "r".into(),
            responsibility: "resp".into(),
            assignment: "do it".into(),
            model: Some(model()),
            reasoning_effort: Some("high".into()),
            workspace: Some("/w".into()),
            system_prompt: Some("sys".into()),
            disabled_tools: vec!["a".into(), "b".into()],
            run_timeout_secs: Some(2),
            idle_timeout_secs: Some(7),
            max_rounds: Some(3),
            read_only: true,
            max_tokens: Some(100),
            max_cost_usd: Some(0.5),
            isolation: Some(Isolation::Worktree),
            auto_run: false,
            placement: Some(Placement::Schedulable { pool: "gpu".into() }),
        };
        // A struct literal: a field added to the input without a builder
        // method fails to compile here.
        assert_eq!(got, want);
    }
}
