//! The per-parent child index: which children each parent has, so that
//! listing a parent's children reads only theirs; and the per-project index
//! (S5): which sessions each project has.
//!
//! It lives in memory. The store builds it when it opens, from the session
//! files it reads then anyway, and keeps it as sessions are created, saved
//! and deleted; it holds the data directory's lock, so no one else changes
//! them meanwhile. Earlier versions kept it on the disk as one empty file per
//! child under `<data>/children/`: that cost an inode allocation on every
//! create, which on a busy disk waits behind the create's own sync (about
//! 0.8 ms of a 1.5 ms run here). Opening removes that directory.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// Children of each parent: parent id -> child ids.
pub(super) type Children = HashMap<String, HashSet<String>>;

/// The in-memory child index, and the project index beside it.
#[derive(Debug, Default)]
pub(super) struct ChildIndex(Mutex<Children>, Mutex<Children>);

impl ChildIndex {
    fn map(&self) -> std::sync::MutexGuard<'_, Children> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn projects(&self) -> std::sync::MutexGuard<'_, Children> {
        self.1.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the whole index (the store's open, or a rebuild): children
    /// by parent, sessions by project.
    pub(super) fn set(&self, children: Children, projects: Children) {
        *self.map() = children;
        *self.projects() = projects;
    }

    /// The sessions recorded under project `key`, in no particular order.
    pub(super) fn read_project(&self, key: &str) -> Vec<String> {
        self.projects()
            .get(key)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records `session` under its parent and its project.
    pub(super) fn note(&self, session: &bamboo_domain::Session) {
        if let Some(parent) = &session.parent_id {
            self.add(parent, &session.id);
        }
        if let Some(key) = &session.project_key {
            self.projects()
                .entry(key.clone())
                .or_default()
                .insert(session.id.clone());
        }
    }

    /// Removes `session` from its parent's and its project's entries.
    pub(super) fn forget(&self, session: &bamboo_domain::Session) {
        if let Some(parent) = &session.parent_id {
            self.remove(parent, &session.id);
        }
        if let Some(key) = &session.project_key {
            let mut map = self.projects();
            if let Some(ids) = map.get_mut(key) {
                ids.remove(&session.id);
                if ids.is_empty() {
                    map.remove(key);
                }
            }
        }
    }

    /// The children recorded under `parent`, in no particular order.
    pub(super) fn read(&self, parent: &str) -> Vec<String> {
        self.map()
            .get(parent)
            .map(|kids| kids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records `child` under `parent`.
    pub(super) fn add(&self, parent: &str, child: &str) {
        self.map()
            .entry(parent.to_owned())
            .or_default()
            .insert(child.to_owned());
    }

    /// Removes `child` from `parent`'s entries.
    pub(super) fn remove(&self, parent: &str, child: &str) {
        let mut map = self.map();
        if let Some(kids) = map.get_mut(parent) {
            kids.remove(child);
            if kids.is_empty() {
                map.remove(parent);
            }
        }
    }
}

/// Removes `<data>/children`, the on-disk index of earlier versions (a
/// cache of the sessions, which an earlier version rebuilds at its own open).
pub(super) fn remove_legacy(data: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(data.join("children")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
