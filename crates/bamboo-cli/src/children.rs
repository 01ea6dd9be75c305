//! What the front door knows about each child: its name, phase, timing, token
//! count and outcome, and the display names of nested (grandchild) sessions.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use bamboo_domain::{AgentEvent, CompletionStatus, TokenUsage};

/// Where a child is in its life, as the status area shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, waiting for a slot.
    Queued,
    /// Its run started on a NATS pool and waits in the pool's queue for a
    /// worker to take it.
    InPool,
    /// Its run started.
    Running,
    /// Waiting for an approval.
    Awaiting,
    /// Its run ended with this status.
    Done(CompletionStatus),
    /// Never created: the engine refused the create (a full disk), and the
    /// front door stopped creating.
    NotCreated,
}

/// One child the front door created.
#[derive(Debug, Clone)]
pub struct Child {
    /// Session id.
    pub id: String,
    /// Short unique display name.
    pub name: String,
    /// Current phase.
    pub phase: Phase,
    /// When its run started (log time).
    pub started: Option<DateTime<Utc>>,
    /// When its run ended (log time).
    pub ended: Option<DateTime<Utc>>,
    /// `token` events seen.
    pub tokens: u64,
    /// Why it did not complete.
    pub error: Option<String>,
    /// Its final answer.
    pub result: Option<String>,
    /// What it was asked to do, when this run gave it.
    pub assignment: Option<String>,
    /// Where its run runs (`pid 1234`, an endpoint, a pool worker), once known.
    pub worker: Option<String>,
    /// What its runs (and its nested sessions') used, when reported.
    pub usage: Option<TokenUsage>,
    /// Its git worktree as its last run left it (`--worktree`).
    pub worktree: Option<bamboo_domain::WorktreeOutcome>,
}

impl Child {
    /// Run time so far (or in total once ended).
    pub fn elapsed(&self, now: DateTime<Utc>) -> Duration {
        let span = match (self.started, self.ended) {
            (Some(s), Some(e)) => e - s,
            (Some(s), None) => now - s,
            _ => chrono::TimeDelta::zero(),
        };
        span.to_std().unwrap_or(Duration::ZERO)
    }
}

/// The sum of what `children` used, when any reported usage.
pub fn total_usage(children: &[Child]) -> Option<TokenUsage> {
    children
        .iter()
        .filter_map(|c| c.usage.as_ref())
        .fold(None, |acc: Option<TokenUsage>, u| {
            let mut t = acc.unwrap_or_default();
            t.add(u);
            Some(t)
        })
}

/// Tokens and cost in a few characters: `1.2k tok · $0.0123`.
pub fn usage_text(u: &TokenUsage) -> String {
    let tokens = if u.total_tokens >= 1000 {
        format!("{:.1}k tok", u.total_tokens as f64 / 1000.0)
    } else {
        format!("{} tok", u.total_tokens)
    };
    match u.cost_usd {
        Some(c) => format!("{tokens} · ${c:.4}"),
        None => tokens,
    }
}

/// Who an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// Index of the top-level child (colour, state) it belongs to.
    pub top: usize,
    /// Display name: the child's, or `name/1` for its first nested session.
    pub label: String,
    /// The session the event is about.
    pub session_id: String,
    /// It is the top-level child itself, not a nested session.
    pub is_top: bool,
}

/// Every child of the run, by index and by id.
#[derive(Debug, Default)]
pub struct Children {
    list: Vec<Child>,
    by_id: HashMap<String, usize>,
    nested: HashMap<String, (usize, String)>,
    nested_count: HashMap<String, usize>,
    open: usize,
    /// Runs go to a NATS pool: a started run waits in its queue until a
    /// worker takes it.
    pooled: bool,
    /// Children the run will create that are not created yet: counted as
    /// queued, so the status area and progress speak of the whole run.
    planned: usize,
}

impl Children {
    /// Children whose runs go to a NATS pool (see [`Phase::InPool`]).
    pub fn pooled() -> Self {
        Self {
            pooled: true,
            ..Self::default()
        }
    }

    /// Registers a created child.
    pub fn add(&mut self, id: String, name: String, assignment: Option<String>) {
        self.by_id.insert(id.clone(), self.list.len());
        self.list.push(Child {
            id,
            name,
            phase: Phase::Queued,
            started: None,
            ended: None,
            tokens: 0,
            usage: None,
            worktree: None,
            error: None,
            result: None,
            assignment,
            worker: None,
        });
        self.open += 1;
    }

    /// Records a child that was never created (`error` says why); it has no
    /// session, and is not waited for.
    pub fn add_uncreated(&mut self, name: String, assignment: String, error: String) {
        self.list.push(Child {
            id: String::new(),
            name,
            phase: Phase::NotCreated,
            started: None,
            ended: None,
            tokens: 0,
            usage: None,
            worktree: None,
            error: Some(error),
            result: None,
            assignment: Some(assignment),
            worker: None,
        });
    }

    /// How many children wait in a NATS pool's queue.
    pub fn in_pool(&self) -> usize {
        self.list
            .iter()
            .filter(|c| c.phase == Phase::InPool)
            .count()
    }

    /// Says that `n` more children are planned but not created yet.
    pub fn set_planned(&mut self, n: usize) {
        self.planned = n;
    }

    /// Every child of the run: created, never created, or still planned.
    pub fn total(&self) -> usize {
        self.list.len() + self.planned
    }

    /// How many children were never created.
    pub fn uncreated(&self) -> usize {
        self.list
            .iter()
            .filter(|c| c.phase == Phase::NotCreated)
            .count()
    }

    /// All children, in creation order.
    pub fn all(&self) -> &[Child] {
        &self.list
    }

    /// Child number `i`.
    pub fn get(&self, i: usize) -> Option<&Child> {
        self.list.get(i)
    }

    /// Child number `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Child> {
        self.list.get_mut(i)
    }

    /// Children whose run has not ended.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Ids of children whose run has not ended.
    pub fn open_ids(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|c| !matches!(c.phase, Phase::Done(_) | Phase::NotCreated))
            .map(|c| c.id.clone())
            .collect()
    }

    /// Who session `id` is: a child, or a nested session under `parent`
    /// (named after its parent the first time it is seen). `None`: not ours.
    pub fn who(&mut self, parent: &str, id: &str) -> Option<Who> {
        if let Some(&top) = self.by_id.get(id) {
            return Some(Who {
                top,
                label: self.list[top].name.clone(),
                session_id: id.to_owned(),
                is_top: true,
            });
        }
        if let Some((top, label)) = self.nested.get(id) {
            return Some(self.nested_who(*top, label.clone(), id));
        }
        let (top, parent_label) = match self.by_id.get(parent) {
            Some(&top) => (top, self.list[top].name.clone()),
            None => self.nested.get(parent).cloned()?,
        };
        let n = self.nested_count.entry(parent.to_owned()).or_insert(0);
        *n += 1;
        let label = format!("{parent_label}/{n}");
        self.nested.insert(id.to_owned(), (top, label.clone()));
        Some(self.nested_who(top, label, id))
    }

    fn nested_who(&self, top: usize, label: String, id: &str) -> Who {
        Who {
            top,
            label,
            session_id: id.to_owned(),
            is_top: false,
        }
    }

    /// Updates the phase and counters for one logged event about `who`;
    /// returns true when it ended a top-level child's run.
    pub fn apply(&mut self, who: &Who, event: &AgentEvent, now: DateTime<Utc>) -> bool {
        let Some(child) = self.list.get_mut(who.top) else {
            return false;
        };
        match event {
            AgentEvent::SubAgentStarted { .. } if who.is_top => {
                if child.started.is_none() {
                    child.started = Some(now);
                }
                if child.phase == Phase::Queued {
                    child.phase = if self.pooled {
                        Phase::InPool
                    } else {
                        Phase::Running
                    };
                }
            }
            AgentEvent::SubAgentEvent { event, .. } => {
                match &**event {
                    AgentEvent::Token { .. } => child.tokens += 1,
                    AgentEvent::Placed { worker, host, .. } if who.is_top => {
                        child.worker = Some(match host {
                            Some(host) => format!("{worker}@{host}"),
                            None => worker.clone(),
                        });
                    }
                    // A nested session's run counts by its `complete`; the
                    // child's own run by its `sub_agent_completed` (which a
                    // run stopped by a budget also carries).
                    AgentEvent::Complete { usage: Some(u) } if !who.is_top => {
                        child.usage.get_or_insert_with(TokenUsage::default).add(u);
                    }
                    _ => {}
                }
                if child.phase == Phase::InPool && who.is_top {
                    child.phase = Phase::Running;
                }
                if child.phase == Phase::Awaiting && who.is_top {
                    child.phase = Phase::Running;
                }
            }
            AgentEvent::ChildApprovalRequested { .. } if !matches!(child.phase, Phase::Done(_)) => {
                child.phase = Phase::Awaiting;
            }
            AgentEvent::SubAgentCompleted {
                status,
                error,
                worktree,
                usage,
                ..
            } if who.is_top => {
                if let Some(w) = worktree {
                    child.worktree = Some(bamboo_domain::WorktreeOutcome::clone(w));
                }
                if let Some(u) = usage {
                    child.usage.get_or_insert_with(TokenUsage::default).add(u);
                }
                if matches!(child.phase, Phase::Done(_)) {
                    return false;
                }
                child.phase = Phase::Done(*status);
                child.ended = Some(now);
                child.started.get_or_insert(now);
                child.error.clone_from(error);
                self.open -= 1;
                return true;
            }
            _ => {}
        }
        false
    }

    /// Child `i` runs again (`--retries`): queued, its last try's times,
    /// error and result forgotten, waited for again.
    pub fn reopen(&mut self, i: usize) {
        let Some(c) = self.list.get_mut(i) else {
            return;
        };
        if matches!(c.phase, Phase::Done(_)) {
            c.phase = Phase::Queued;
            c.started = None;
            c.ended = None;
            c.error = None;
            c.result = None;
            self.open += 1;
        }
    }

    /// Ends child `i` without a run (`--halt` left it unstarted): it is not
    /// waited for any more.
    pub fn close(&mut self, i: usize, status: CompletionStatus, error: String) {
        let Some(c) = self.list.get_mut(i) else {
            return;
        };
        if !matches!(c.phase, Phase::Done(_) | Phase::NotCreated) {
            c.phase = Phase::Done(status);
            c.error = Some(error);
            self.open -= 1;
        }
    }

    /// Counts per phase: (queued, running, awaiting, completed, not completed).
    pub fn counts(&self) -> [usize; 5] {
        let mut c = [self.planned, 0, 0, 0, 0];
        for child in &self.list {
            let i = match child.phase {
                Phase::Queued | Phase::InPool => 0,
                Phase::Running => 1,
                Phase::Awaiting => 2,
                Phase::Done(CompletionStatus::Completed) => 3,
                Phase::Done(_) | Phase::NotCreated => 4,
            };
            c[i] += 1;
        }
        c
    }

    /// What all children used together (the root's total), when any reported.
    pub fn total_usage(&self) -> Option<TokenUsage> {
        total_usage(&self.list)
    }

    /// Children that completed.
    pub fn completed(&self) -> usize {
        self.counts()[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(parent: &str, child: &str, status: CompletionStatus) -> AgentEvent {
        AgentEvent::SubAgentCompleted {
            parent_session_id: parent.into(),
            child_session_id: child.into(),
            status,
            error: None,
            result: None,
            usage: None,
            worktree: None,
        }
    }

    #[test]
    fn nested_sessions_are_named_under_their_parent() {
        let mut c = Children::default();
        c.add("a".into(), "alpha".into(), None);
        assert_eq!(c.who("root", "a").unwrap().label, "alpha");
        let g1 = c.who("a", "g1").unwrap();
        assert_eq!(
            (g1.label.as_str(), g1.top, g1.is_top),
            ("alpha/1", 0, false)
        );
        assert_eq!(c.who("a", "g2").unwrap().label, "alpha/2");
        assert_eq!(c.who("g1", "gg").unwrap().label, "alpha/1/1");
        assert_eq!(c.who("a", "g1").unwrap().label, "alpha/1", "stable");
        assert!(c.who("stranger", "x").is_none());
    }

    #[test]
    fn phases_follow_the_log_and_only_top_completions_close_a_child() {
        let mut c = Children::default();
        c.add("a".into(), "alpha".into(), None);
        let now = Utc::now();
        let a = c.who("root", "a").unwrap();
        let started = AgentEvent::SubAgentStarted {
            parent_session_id: "root".into(),
            child_session_id: "a".into(),
            title: None,
        };
        c.apply(&a, &started, now);
        assert_eq!(c.get(0).unwrap().phase, Phase::Running);
        let g = c.who("a", "g").unwrap();
        assert!(!c.apply(&g, &completed("a", "g", CompletionStatus::Error), now));
        assert_eq!(c.open(), 1);
        assert!(c.apply(
            &a,
            &completed("root", "a", CompletionStatus::Completed),
            now
        ));
        assert!(!c.apply(
            &a,
            &completed("root", "a", CompletionStatus::Completed),
            now
        ));
        assert_eq!(c.open(), 0);
        assert_eq!(c.counts(), [0, 0, 0, 1, 0]);
    }
}
