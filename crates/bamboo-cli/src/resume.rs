//! `run --resume ROOT`: rerun the children a previous run left unfinished.
//!
//! After a crash (or SIGKILL) of the front door, its queued children stay
//! `pending` with their assignment as the last user message, and the ones
//! that were running are marked `error` by the next engine's recovery
//! ("the engine stopped while this child was running ..."). Resuming reruns
//! every child of the root that did not finish: status pending, running,
//! error, cancelled or timeout. Completed and skipped children are left alone:
//! a completed child has its answer, a skipped one had nothing to do. Only
//! direct children of the root are rerun; a rerun child spawns its own
//! children again as it needs them.
//!
//! The root also carries the run's plan (each assignment and its name), so
//! children a run never created, because the engine refused the create (a
//! full disk), are created by the resume.

use std::collections::HashSet;

use anyhow::{bail, Context};
use bamboo_domain::ChildStatus;
use bamboo_engine::{Engine, RunTicket};
use serde::{Deserialize, Serialize};

/// The root's metadata key holding the run's plan.
const PLAN_KEY: &str = "bamboo.run.plan";

/// One planned child: its assignment and display name (its title).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Planned {
    assignment: String,
    name: String,
}

/// The root's metadata recording that `assignments` are to run as children
/// named `names`.
pub fn plan(
    assignments: &[String],
    names: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let planned: Vec<Planned> = assignments
        .iter()
        .zip(names)
        .map(|(assignment, name)| Planned {
            assignment: assignment.clone(),
            name: name.clone(),
        })
        .collect();
    let mut metadata = serde_json::Map::new();
    if let Ok(value) = serde_json::to_value(planned) {
        metadata.insert(PLAN_KEY.to_owned(), value);
    }
    metadata
}

/// The `(assignment, name)` of every child the root's plan has and no child
/// of the root carries (by name), in plan order: the ones a run never
/// created. Empty for a root with no plan (an older version's, or not
/// made by `run`).
pub async fn never_created(engine: &Engine, root: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Some(session) = engine
        .session(root)
        .await
        .with_context(|| format!("cannot read session {root}"))?
    else {
        return Ok(Vec::new());
    };
    let Some(value) = session.metadata.get(PLAN_KEY) else {
        return Ok(Vec::new());
    };
    let planned: Vec<Planned> = serde_json::from_value(value.clone())
        .with_context(|| format!("the plan stored with root {root} is damaged"))?;
    let children = engine
        .list_children(root)
        .await
        .with_context(|| format!("cannot list the children of {root}"))?;
    let created: HashSet<&str> = children.iter().map(|c| c.title.as_str()).collect();
    Ok(planned
        .into_iter()
        .filter(|p| !created.contains(p.name.as_str()))
        .map(|p| (p.assignment, p.name))
        .collect())
}

/// Whether `--resume` reruns a child with this status.
pub fn needs_rerun(status: ChildStatus) -> bool {
    !matches!(status, ChildStatus::Completed | ChildStatus::Skipped)
}

/// The ids of the children of `root` that `--resume` reruns, oldest first:
/// every child whose status [`needs_rerun`] and that has no run queued or in
/// flight. Fails when `root` is not a root session of this engine's data.
pub async fn children_to_resume(engine: &Engine, root: &str) -> anyhow::Result<Vec<String>> {
    let session = engine
        .session(root)
        .await
        .with_context(|| format!("cannot read session {root}"))?
        .with_context(|| {
            format!("no session {root} in this data directory: `bamboo-worker sessions --data-dir DIR` lists the root ids")
        })?;
    if session.parent_id.is_some() {
        bail!("session {root} is a child, not a root: resume the root it belongs to (`bamboo-worker sessions --data-dir DIR` shows the tree)");
    }
    let children = engine
        .list_children(root)
        .await
        .with_context(|| format!("cannot list the children of {root}"))?;
    Ok(children
        .into_iter()
        .filter(|c| needs_rerun(c.status) && !c.running)
        .map(|c| c.id)
        .collect())
}

/// One child `--resume` queued again.
#[derive(Debug)]
pub struct Resumed {
    /// The child.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its status before the rerun.
    pub was: ChildStatus,
    /// Its last error before the rerun.
    pub last_error: Option<String>,
    /// Resolves when the rerun ends (may be dropped: events say the same).
    pub ticket: RunTicket,
}

impl Resumed {
    /// One line saying what is rerun and why, e.g.
    /// `rerunning "fix the test" (was error: the engine stopped ...)`.
    pub fn describe(&self) -> String {
        let why = self
            .last_error
            .as_deref()
            .and_then(|e| e.lines().next())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        format!("rerunning {:?} (was {}{why})", self.title, self.was)
    }
}

/// Queues a rerun of every child [`children_to_resume`] selects, each from
/// its last user message (the transcript after it is dropped). Subscribe to
/// the root's events (from now) before calling this, so no event is missed.
pub async fn rerun(engine: &Engine, root: &str) -> anyhow::Result<Vec<Resumed>> {
    let mut out = Vec::new();
    for id in children_to_resume(engine, root).await? {
        let detail = engine
            .get_child(root, &id)
            .await
            .with_context(|| format!("cannot read child {id}"))?;
        let ticket = engine
            .run_child(root, &id, true)
            .await
            .with_context(|| format!("cannot rerun child {id}"))?;
        out.push(Resumed {
            id,
            title: detail.title,
            was: detail.status,
            last_error: detail.last_error,
            ticket,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unfinished_statuses_are_rerun() {
        use ChildStatus::*;
        for s in [Pending, Running, Error, Cancelled, Timeout] {
            assert!(needs_rerun(s), "{s}");
        }
        for s in [Completed, Skipped] {
            assert!(!needs_rerun(s), "{s}");
        }
    }

    #[test]
    fn the_description_names_the_child_and_the_first_line_of_its_error() {
        let (_tx, ticket) = tokio::sync::oneshot::channel();
        let r = Resumed {
            id: "c1".into(),
            title: "fix it".into(),
            was: ChildStatus::Error,
            last_error: Some("boom\nstack".into()),
            ticket,
        };
        assert_eq!(r.describe(), r#"rerunning "fix it" (was error: boom)"#);
    }
}
