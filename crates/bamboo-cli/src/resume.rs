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
//! The run's plan (each assignment and its name) is kept too, so children a
//! run never created, because the engine refused the create (a full disk),
//! are created by the resume. It lives in a file of its own under
//! `<data>/plans/`, named in the root's metadata: a root is read once per
//! child created, and a plan of 100,000 children inside it would make
//! creating them quadratic.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{bail, Context};
use bamboo_domain::ChildStatus;
use bamboo_engine::store::StoreError;
use bamboo_engine::{Engine, EngineError, RunTicket};
use serde::{Deserialize, Serialize};

/// The root's metadata key naming its plan's file in [`PLANS_DIR`].
const PLAN_FILE_KEY: &str = "bamboo.run.plan_file";
/// The root's metadata key holding the plan itself, as earlier versions
/// stored it (still read).
const PLAN_KEY: &str = "bamboo.run.plan";
/// The data directory's folder of plan files.
const PLANS_DIR: &str = "plans";

/// One planned child: its assignment and display name (its title).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Planned {
    assignment: String,
    name: String,
}

/// Stores the plan that `assignments` are to run as children named `names`
/// durably in `data_dir`, and returns the root's metadata naming it. Done
/// before the root exists: a root never names a plan that is not on disk.
pub fn plan(
    data_dir: &Path,
    assignments: &[String],
    names: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, EngineError> {
    let planned: Vec<Planned> = assignments
        .iter()
        .zip(names)
        .map(|(assignment, name)| Planned {
            assignment: assignment.clone(),
            name: name.clone(),
        })
        .collect();
    let dir = data_dir.join(PLANS_DIR);
    let refused = |path: &Path, e: std::io::Error| EngineError::Store(StoreError::from_io(path, e));
    // Private, as every folder of the data directory (the file is 0600).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| refused(&dir, e))?;
    // A fresh name each time: a crash mid-write leaves a file no root names.
    let mut file = tempfile::Builder::new()
        .prefix("plan-")
        .suffix(".json")
        .tempfile_in(&dir)
        .map_err(|e| refused(&dir, e))?;
    let path = file.path().to_owned();
    let written = serde_json::to_writer(std::io::BufWriter::new(file.as_file_mut()), &planned)
        .map_err(std::io::Error::from)
        .and_then(|()| file.as_file().sync_all());
    written.map_err(|e| refused(&path, e))?;
    file.keep().map_err(|e| refused(&path, e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| refused(&dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metadata = serde_json::Map::new();
    metadata.insert(PLAN_FILE_KEY.to_owned(), name.into());
    Ok(metadata)
}

/// The plan of `root` (`session`), from its file or, as earlier versions
/// kept it, from its metadata. `None` for a root with no plan.
fn stored_plan(
    data_dir: &Path,
    root: &str,
    session: &bamboo_domain::Session,
) -> anyhow::Result<Option<Vec<Planned>>> {
    let damaged = || format!("the plan stored with root {root} is damaged");
    if let Some(name) = session.metadata.get(PLAN_FILE_KEY) {
        let name = name
            .as_str()
            .filter(|n| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\']));
        let name = name.with_context(damaged)?;
        let path = data_dir.join(PLANS_DIR).join(name);
        let text = std::fs::read(&path)
            .with_context(|| format!("cannot read the plan of root {root} ({})", path.display()))?;
        return Ok(Some(serde_json::from_slice(&text).with_context(damaged)?));
    }
    match session.metadata.get(PLAN_KEY) {
        Some(value) => Ok(Some(
            serde_json::from_value(value.clone()).with_context(damaged)?,
        )),
        None => Ok(None),
    }
}

/// The `(assignment, name)` of every child the root's plan has and no child
/// of the root carries (by name), in plan order: the ones a run never
/// created. Empty for a root with no plan (not made by `run`).
pub async fn never_created(engine: &Engine, root: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Some(session) = engine
        .session(root)
        .await
        .with_context(|| format!("cannot read session {root}"))?
    else {
        return Ok(Vec::new());
    };
    let Some(planned) = stored_plan(engine.data_dir(), root, &session)? else {
        return Ok(Vec::new());
    };
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

    fn root_with(metadata: serde_json::Map<String, serde_json::Value>) -> bamboo_domain::Session {
        let mut root = bamboo_domain::Session::new_root("p");
        root.metadata = metadata;
        root
    }

    #[test]
    fn a_plan_is_kept_in_its_own_file_and_read_back_in_order() {
        // S6: the children a full disk kept from being created are known.
        let dir = tempfile::tempdir().unwrap();
        let assignments = ["fix a".to_owned(), "fix b".to_owned()];
        let names = ["a".to_owned(), "b".to_owned()];
        let metadata = plan(dir.path(), &assignments, &names).unwrap();
        let text = serde_json::to_string(&metadata).unwrap();
        assert!(
            !text.contains("fix a"),
            "the root holds only the file's name: {text}"
        );
        let read = stored_plan(dir.path(), "r", &root_with(metadata)).unwrap();
        let pairs: Vec<_> = read
            .unwrap()
            .into_iter()
            .map(|p| (p.assignment, p.name))
            .collect();
        assert_eq!(
            pairs,
            [("fix a".into(), "a".into()), ("fix b".into(), "b".into())]
        );
    }

    #[test]
    fn a_plan_in_the_roots_metadata_as_earlier_versions_kept_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            PLAN_KEY.into(),
            serde_json::json!([{"assignment": "old", "name": "o"}]),
        );
        let read = stored_plan(dir.path(), "r", &root_with(metadata)).unwrap();
        assert_eq!(read.unwrap()[0].assignment, "old");
        assert!(stored_plan(dir.path(), "r", &root_with(Default::default()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_plan_name_that_leaves_the_plans_folder_or_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../store.db", "", "plan-gone.json"] {
            let mut metadata = serde_json::Map::new();
            metadata.insert(PLAN_FILE_KEY.into(), name.into());
            let err = stored_plan(dir.path(), "r", &root_with(metadata)).unwrap_err();
            assert!(format!("{err:#}").contains("plan"), "{name}: {err:#}");
        }
    }

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
