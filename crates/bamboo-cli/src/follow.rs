//! `sessions show ID --follow`: after the session as it is now, the events
//! logged since, as they are logged, until the session's runs end. Reads
//! the files only (no lock, no write), so it works while a `run` holds the
//! data directory; the engine writes each event to its log within a tenth
//! of a second.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bamboo_domain::ChildStatus;
use bamboo_engine::store::{FileStore, Parent, Query};
use bamboo_engine::{LogTail, LoggedEvent};

use super::sessions::concerns;
use super::transcript::Transcript;

/// How often the files are read again. The engine writes at most this late
/// too, so reading more often would find nothing more.
const POLL: Duration = Duration::from_millis(100);

/// How far `show` read each log: follow continues after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadTo {
    /// The newest sequence number read from the parent's log (0: none).
    pub parent: u64,
    /// The newest sequence number read from the session's own log.
    pub own: u64,
}

/// Prints the events of session `id` logged after `read_to` as they arrive;
/// returns once neither it nor any of its descendants is running. A child
/// not started yet is waited for when `held` (a run holds the directory and
/// may start it); otherwise nothing will.
pub async fn follow(
    dir: &Path,
    id: &str,
    titles: HashMap<String, String>,
    read_to: ReadTo,
    held: bool,
) -> anyhow::Result<()> {
    let session = FileStore::peek(dir, id)
        .with_context(|| format!("cannot read session {id}"))?
        .with_context(|| format!("session {id} is gone from {}", dir.display()))?;
    let mut parent = session
        .parent_id
        .as_deref()
        .map(|p| (LogTail::new(dir, p), read_to.parent));
    let mut own = (LogTail::new(dir, id), read_to.own);
    let mut transcript = Transcript::new(titles);
    let mut liveness = Liveness {
        id: id.to_owned(),
        parent: session.parent_id.clone(),
        held,
        parents: HashMap::new(),
    };
    let mut ended_once = false;
    loop {
        // Read before looking at the status: an event logged before the
        // run's end is read at the latest on the round after it.
        let mut text = String::new();
        if let Some((tail, seen)) = &mut parent {
            let events = fresh(tail, seen)?;
            render(
                &mut text,
                &mut transcript,
                events.iter().filter(|e| concerns(&e.event, id)),
            );
        }
        let (tail, seen) = &mut own;
        render(&mut text, &mut transcript, fresh(tail, seen)?.iter());
        super::sessions::emit(&text);
        if !liveness.live(dir)? {
            // One more round: the last events may reach the file just after
            // the status does.
            if ended_once {
                break;
            }
            ended_once = true;
        } else {
            ended_once = false;
        }
        tokio::time::sleep(POLL).await;
    }
    let mut text = String::new();
    transcript.finish(&mut text);
    super::sessions::emit(&text);
    Ok(())
}

/// The events of `tail` newer than `seen`, moving `seen` on.
fn fresh(tail: &mut LogTail, seen: &mut u64) -> anyhow::Result<Vec<LoggedEvent>> {
    let mut events = tail.read_new().context("cannot read an event log")?;
    events.retain(|e| e.seq > *seen);
    if let Some(last) = events.last() {
        *seen = last.seq;
    }
    Ok(events)
}

fn render<'a>(
    out: &mut String,
    transcript: &mut Transcript,
    events: impl Iterator<Item = &'a LoggedEvent>,
) {
    for e in events {
        transcript.push(out, e);
    }
}

/// Whether the followed session or a descendant still runs, from the
/// store's status index: the running sessions (few, whatever the size of
/// the directory) and their ancestors, not every session.
struct Liveness {
    /// The followed session and its parent.
    id: String,
    parent: Option<String>,
    /// Whether a run holds the directory (a pending session may still start).
    held: bool,
    /// Session → parent, for the ancestors walked so far (never changes).
    parents: HashMap<String, Option<String>>,
}

impl Liveness {
    fn live(&mut self, dir: &Path) -> anyhow::Result<bool> {
        let peek =
            |query: &Query| FileStore::peek_query(dir, query).context("cannot list the sessions");
        if self.held {
            // The followed session itself waits to run.
            let pending = Query {
                parent: self.parent.clone().map_or(Parent::None, Parent::Of),
                status: Some(ChildStatus::Pending),
                ..Query::all()
            };
            if peek(&pending)?.iter().any(|s| s.id == self.id) {
                return Ok(true);
            }
        }
        let running = peek(&Query {
            status: Some(ChildStatus::Running),
            ..Query::all()
        })?;
        for s in &running {
            self.parents.insert(s.id.clone(), s.parent_id.clone());
        }
        for s in &running {
            if self.within(dir, &s.id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `from` is the followed session or below it.
    fn within(&mut self, dir: &Path, from: &str) -> anyhow::Result<bool> {
        let mut at = Some(from.to_owned());
        // Bounded, in case a damaged store names a parent circle.
        for _ in 0..MAX_DEPTH {
            let Some(cur) = at else {
                return Ok(false);
            };
            if cur == self.id {
                return Ok(true);
            }
            at = self.parent_of(dir, &cur)?;
        }
        Ok(false)
    }

    fn parent_of(&mut self, dir: &Path, id: &str) -> anyhow::Result<Option<String>> {
        if let Some(p) = self.parents.get(id) {
            return Ok(p.clone());
        }
        let parent = FileStore::peek(dir, id)
            .with_context(|| format!("cannot read session {id}"))?
            .and_then(|s| s.parent_id);
        self.parents.insert(id.to_owned(), parent.clone());
        Ok(parent)
    }
}

/// Deeper than any tree of sessions (spawn depth is limited far below).
const MAX_DEPTH: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::{ChildInfo, Session};
    use bamboo_engine::store::SessionStore as _;

    fn child(parent: &Session, status: ChildStatus) -> Session {
        let mut s = Session::new_child(parent, ChildInfo::new("r", "task"));
        if let Some(c) = s.child.as_mut() {
            c.status = status;
        }
        s
    }

    fn liveness(of: &Session, held: bool) -> Liveness {
        Liveness {
            id: of.id.clone(),
            parent: of.parent_id.clone(),
            held,
            parents: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn a_session_lives_while_it_or_a_descendant_runs_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).await.unwrap();
        let root = Session::new_root("run");
        let other_root = Session::new_root("another run");
        let mid = child(&root, ChildStatus::Completed);
        let deep = child(&mid, ChildStatus::Running);
        let pending = child(&root, ChildStatus::Pending);
        let elsewhere = child(&other_root, ChildStatus::Running);
        for s in [&root, &other_root, &mid, &deep, &pending, &elsewhere] {
            store.create(s).await.unwrap();
        }
        let d = dir.path();
        assert!(liveness(&root, false).live(d).unwrap(), "a grandchild runs");
        assert!(liveness(&mid, false).live(d).unwrap(), "its child runs");
        assert!(liveness(&deep, false).live(d).unwrap(), "it runs");
        assert!(
            !liveness(&pending, false).live(d).unwrap(),
            "pending, and no run holds the directory to start it"
        );
        assert!(
            liveness(&pending, true).live(d).unwrap(),
            "pending while a run holds the directory: it may start"
        );
        let done = child(&root, ChildStatus::Completed);
        store.create(&done).await.unwrap();
        assert!(
            !liveness(&done, true).live(d).unwrap(),
            "a sibling's or another root's running child is not its"
        );
    }
}
