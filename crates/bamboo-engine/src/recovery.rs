//! Start-up recovery: a child persisted as `running` has no live run in a
//! freshly started engine (the previous one died), so it is marked `error`
//! with a reason saying so. Steering messages it had queued are kept, and
//! inbox messages claimed but not acknowledged are put back. A mark the disk
//! refuses (it is full) waits in the store's deferred endings: readers see
//! it at once, marked as not stored, and it is written when space allows.

use bamboo_domain::{ChildStatus, Message, Session};

use std::collections::HashSet;

use crate::launch::{PlacementLauncher, Resumable};
use crate::store::{Deferred, Ending, Query, SessionStore, StoreError};

/// The reason recorded on an orphaned child.
pub const ORPHAN_REASON: &str =
    "the engine stopped while this child was running, so the run was lost; run it again";

/// Marks every orphaned running child as error, except those in `keep`
/// (runs this engine reattaches to). Returns how many; those whose
/// write was refused are among them, deferred.
pub(crate) async fn mark_orphans(
    store: &Deferred,
    keep: &HashSet<String>,
) -> Result<usize, StoreError> {
    let mut marked = 0;
    // Only the running children, from the store's status index: opening
    // reads no other session.
    let running = store
        .query(&Query::with_status(ChildStatus::Running))
        .await?;
    for id in running.into_iter().map(|s| s.id) {
        if keep.contains(&id) {
            continue;
        }
        let marked_now = store
            .update(
                &id,
                Box::new(|s: &mut Session| {
                    let Some(c) = s.child.as_mut() else {
                        return false;
                    };
                    c.status = ChildStatus::Error;
                    c.last_error = Some(ORPHAN_REASON.into());
                    c.completed_at = Some(chrono::Utc::now());
                    for text in c.pending_messages.drain(..) {
                        s.messages.push(Message::user(text));
                    }
                    true
                }),
            )
            .await;
        match marked_now {
            Ok(_) => tracing::warn!(child = %id, "marked orphaned running child as error"),
            // Opening must work on a full disk: readers need no free space.
            Err(e) => {
                tracing::warn!(child = %id, error = %e,
                    "an orphaned running child is shown as error, but that cannot be stored yet");
                let ending = Ending::refused(ChildStatus::Error, ORPHAN_REASON.into(), &e);
                store.defer(&id, ending);
            }
        }
        marked += 1;
    }
    Ok(marked)
}

/// The runs a previous engine left in flight (on a placement where runs
/// outlive the engine) whose child is still `running`, with the child's
/// parent: the runs go on without the engine, so this one reattaches to
/// them (issue 12). Every other record is dropped; a run this engine cannot
/// reach (no NATS pool client) is reported, and its child is then marked
/// orphaned like a local one.
pub(crate) async fn resumable_runs(
    store: &dyn SessionStore,
    launcher: &PlacementLauncher,
) -> Vec<(Resumable, String)> {
    let mut out = Vec::new();
    for run in launcher.in_flight() {
        let session = store.load(&run.child_id).await.ok().flatten();
        let parent = session
            .filter(|s| s.status() == Some(ChildStatus::Running))
            .and_then(|s| s.parent_id);
        let Some(parent) = parent else {
            launcher.forget(&run);
            continue;
        };
        match launcher.can_resume(&run) {
            Ok(()) => out.push((run, parent)),
            Err(e) => {
                tracing::warn!(child = %run.child_id, run = %run, error = %e,
                    "a run of a previous engine may still be going, but this engine cannot reach it; the child is marked as error");
                launcher.forget(&run);
            }
        }
    }
    out
}

/// Puts back every inbox message a dead engine had claimed but not
/// acknowledged (cur/ → new/), so it is delivered again (at least once).
pub fn recover_inboxes(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        match crate::inbox::Inbox::open(entry.path()) {
            Ok(inbox) => drop(inbox),
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), error = %e, "could not recover an inbox")
            }
        }
    }
}
