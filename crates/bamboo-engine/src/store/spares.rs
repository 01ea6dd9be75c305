//! Session files made ahead of need, so that a create waits on one disk sync
//! instead of three.
//!
//! A new file is durable once its data, its inode and its directory entry
//! are on the disk: a data sync, a directory sync, and an inode allocation
//! that waits behind both when the disk is busy. A spare is an empty file
//! `.spare-<uuid>` in `sessions/` whose entry an earlier directory sync made
//! durable. A create links the session's name `<id>.jsonl` to a free spare,
//! writes the document and syncs the data only: the session is durable at
//! once under the spare's name, and under its own from the next directory
//! sync. The refill makes that sync (with new spares) and only then removes
//! the spare's name: the spare is *retired*.
//!
//! What a crash can leave, and what opening the store makes of it, so that
//! every spare is free or gone afterwards:
//! - a spare with more than one link: its session's name survived, the
//!   spare's name is removed;
//! - a spare holding a document with no `<id>.jsonl`: the session's name was
//!   lost before the directory sync; it is linked back;
//! - a spare holding a document while `<id>.jsonl` is another file: the
//!   session was rewritten whole (compacted) since; the spare is removed;
//! - a spare with no complete line: a create that never answered; it is
//!   emptied and free again;
//! - a spare whose document is damaged is left, with a warning, for an
//!   operator.
//!
//! Deleting a session removes its spare's name too, if still there, so a
//! deleted session never comes back. Spares are made on the first create,
//! so an engine that only reads (`bamboo-worker sessions`) leaves none.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::log::{self, LogError};
use super::private::{open_private, private_file_options};

/// Free spares a refill brings the pool back to.
pub(super) const TARGET: usize = 64;
/// A take that leaves fewer free spares than this starts a refill.
pub(super) const LOW: usize = 16;
/// Prefix of a spare's file name (hidden: listings skip dot files).
const PREFIX: &str = ".spare-";

/// The spares of one `sessions/` directory.
#[derive(Debug)]
pub(super) struct Spares {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: Vec<PathBuf>,
    /// Session id -> the spare its name is linked to, until the spare's name
    /// is removed after a directory sync.
    retired: HashMap<String, PathBuf>,
    refilling: bool,
    /// The store is gone: a refill in flight stops at its next step.
    closed: bool,
}

/// What [`fill`] did.
#[derive(Debug)]
pub(super) enum Filled {
    /// The session's name now holds its durable document.
    Written,
    /// The session's name exists already: nothing was written, the spare
    /// is still free.
    NameTaken,
    /// The file system refused the link (no hard links there): nothing was
    /// written, and spares are of no use in this directory.
    NoLink(io::Error),
}

/// Links `path` (a session's name) to the free `spare`, writes `line` and
/// syncs the data (blocking). Whatever fails after the link removes both
/// names, so a failed create leaves no session behind.
pub(super) fn fill(spare: &Path, path: &Path, line: &[u8]) -> io::Result<Filled> {
    match std::fs::hard_link(spare, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Filled::NameTaken),
        Err(e) => return Ok(Filled::NoLink(e)),
    }
    let written = (|| {
        let mut options = private_file_options();
        options.write(true);
        let mut f = open_private(&options, path)?;
        f.write_all(line)?;
        // The spare's entry is durable already: the data sync is enough.
        f.sync_data()
    })();
    if let Err(e) = written {
        unlink_both(path, spare);
        return Err(e);
    }
    Ok(Filled::Written)
}

/// Removes a session's name and its spare's, as a failed create must.
fn unlink_both(path: &Path, spare: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(spare);
}

impl Spares {
    /// The spares of `dir` as a crash or a clean stop left them, each settled
    /// (see the module docs); the free ones are kept (blocking).
    pub(super) fn recover(dir: &Path) -> io::Result<Self> {
        let mut free = Vec::new();
        let mut changed = false;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
                continue;
            }
            let path = entry.path();
            match settle(dir, &path) {
                Ok(Settled::Free) => free.push(path),
                Ok(Settled::Changed) => changed = true,
                Ok(Settled::Left) => {}
                // Removed meanwhile by the last step of a closed store's refill.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if changed {
            sync_dir(dir)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                free,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free spare, if there is one. Starts a refill in the background when
    /// few are left (the caller then creates the usual way).
    pub(super) fn take(self: &Arc<Self>) -> Option<PathBuf> {
        let mut state = self.state();
        let spare = state.free.pop();
        if state.free.len() < LOW && !state.refilling && !state.closed {
            state.refilling = true;
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.refill());
        }
        spare
    }

    /// Returns a spare [`fill`] left unused.
    pub(super) fn put_back(&self, spare: PathBuf) {
        let mut state = self.state();
        if !state.closed {
            state.free.push(spare);
        }
    }

    /// Records that session `id`'s name is linked to `spare`, whose own name
    /// the next refill removes.
    pub(super) fn retire(&self, id: &str, spare: PathBuf) {
        self.state().retired.insert(id.to_owned(), spare);
    }

    /// The spare still linked to session `id`, for its delete to remove.
    pub(super) fn forget(&self, id: &str) -> Option<PathBuf> {
        self.state().retired.remove(id)
    }

    /// No more spares: the store closed, or its file system has no links.
    pub(super) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.free.clear();
    }

    /// Makes spares up to [`TARGET`], syncs the directory (which also makes
    /// the names of the sessions created since durable), then removes the
    /// retired spares' names (blocking; runs in the background).
    pub(super) fn refill(&self) {
        let (want, retired) = {
            let state = self.state();
            let retired: Vec<_> = state
                .retired
                .iter()
                .map(|(id, p)| (id.clone(), p.clone()))
                .collect();
            (TARGET.saturating_sub(state.free.len()), retired)
        };
        let made = self.make(want);
        match made.and_then(|made| sync_dir(&self.dir).map(|()| made)) {
            Ok(made) => {
                let mut state = self.state();
                if !state.closed {
                    state.free.extend(made);
                }
                drop(state);
                self.remove_retired(retired);
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "cannot make spare session files; creates take the slower way");
            }
        }
        self.state().refilling = false;
    }

    /// Creates up to `n` new spares; stops early once the store closed. A
    /// spare made before a failure is removed again.
    fn make(&self, n: usize) -> io::Result<Vec<PathBuf>> {
        let mut made = Vec::with_capacity(n);
        for _ in 0..n {
            if self.state().closed {
                break;
            }
            let path = self
                .dir
                .join(format!("{PREFIX}{}", uuid::Uuid::new_v4().simple()));
            let mut options = private_file_options();
            options.write(true).create_new(true);
            if let Err(e) = open_private(&options, &path) {
                for p in &made {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            made.push(path);
        }
        Ok(made)
    }

    /// Removes the names of spares whose sessions' names a directory sync
    /// made durable (best effort: opening the store removes any left).
    fn remove_retired(&self, retired: Vec<(String, PathBuf)>) {
        for (id, spare) in retired {
            if self.state().closed {
                return;
            }
            match std::fs::remove_file(&spare) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::debug!(file = %spare.display(), error = %e, "spare name not removed");
                    continue;
                }
            }
            let mut state = self.state();
            if state.retired.get(&id) == Some(&spare) {
                state.retired.remove(&id);
            }
        }
    }

    /// How many spares are free (tests).
    #[cfg(test)]
    pub(super) fn free(&self) -> usize {
        self.state().free.len()
    }
}

/// What [`settle`] made of one spare.
enum Settled {
    Free,
    Changed,
    Left,
}

/// Only the id of a session document.
#[derive(Deserialize)]
struct Named {
    id: String,
}

/// Settles one spare left in `dir` (see the module docs).
fn settle(dir: &Path, spare: &Path) -> io::Result<Settled> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::symlink_metadata(spare)?.nlink() > 1 {
        std::fs::remove_file(spare)?;
        return Ok(Settled::Changed);
    }
    let bytes = std::fs::read(spare)?;
    match log::newest::<Named>(&bytes) {
        Err(LogError::Empty) => {
            if !bytes.is_empty() {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(spare)?
                    .set_len(0)?;
            }
            Ok(Settled::Free)
        }
        Ok(newest) if super::check_id(&newest.doc.id).is_ok() => {
            let name = dir.join(super::file::file_name(&newest.doc.id));
            match std::fs::hard_link(spare, &name) {
                Ok(()) => tracing::info!(session = %newest.doc.id,
                    "restored the name of a session created just before a crash"),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            std::fs::remove_file(spare)?;
            Ok(Settled::Changed)
        }
        Ok(_) => {
            tracing::warn!(file = %spare.display(), "spare session file names no valid session id; left for an operator");
            Ok(Settled::Left)
        }
        Err(LogError::BadLine(reason)) => {
            tracing::warn!(file = %spare.display(), reason, "spare session file is damaged; left for an operator");
            Ok(Settled::Left)
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
