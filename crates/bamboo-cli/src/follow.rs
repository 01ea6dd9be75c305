//! `sessions show ID --follow`: after the session as it is now, the events
//! logged since, as they are logged, until the session's runs end. Reads
//! the files only (no lock, no write), so it works while a `run` holds the
//! data directory; the engine writes each event to its log within a tenth
//! of a second.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bamboo_domain::{ChildStatus, Session};
use bamboo_engine::store::FileStore;
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
        if !live(dir, id, held)? {
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

/// Whether session `id` or a descendant runs (or, when `held`, `id` waits
/// to run).
fn live(dir: &Path, id: &str, held: bool) -> anyhow::Result<bool> {
    let mut sessions: Vec<Session> = Vec::new();
    for sid in FileStore::peek_ids(dir).context("cannot list the sessions")? {
        if let Ok(Some(s)) = FileStore::peek(dir, &sid) {
            sessions.push(s);
        }
    }
    let by_id: HashMap<&str, &Session> = sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let within = |s: &Session| {
        // Walk up to the followed session (ids are unique; depth is small).
        let mut at = Some(s);
        while let Some(cur) = at {
            if cur.id == id {
                return true;
            }
            at = cur.parent_id.as_deref().and_then(|p| by_id.get(p).copied());
        }
        false
    };
    Ok(sessions.iter().any(|s| {
        let status = s.status();
        let waiting = held && s.id == id && status == Some(ChildStatus::Pending);
        (status == Some(ChildStatus::Running) || waiting) && within(s)
    }))
}
