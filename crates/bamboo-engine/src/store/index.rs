//! The per-parent child index: `<data>/children/<parent>/<child>`, one empty
//! marker file per child, so listing a parent's children reads one directory
//! instead of every session.
//!
//! The index is a cache over the session files, which are the truth. It is
//! reconciled with them each time the store opens (missing entries added,
//! dangling ones removed), so an entry need not be synced when it is written:
//! whatever a crash loses, the next open puts back. That keeps a create to one
//! durable write, the session's own.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::file::{blocking, io_err};
use super::private::{
    create_private_dir_all, create_private_file, open_private, private_file_options,
};
use super::StoreError;

/// Children expected under each parent: parent id -> child ids.
pub(super) type Expected = HashMap<String, HashSet<String>>;

#[derive(Debug, Clone)]
pub(super) struct ChildIndex {
    dir: PathBuf,
}

impl ChildIndex {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The children recorded under `parent`, in no particular order.
    pub(super) async fn read(&self, parent: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.dir.join(parent);
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut ids = Vec::new();
        while let Some(e) = entries.next_entry().await.map_err(|e| io_err(&dir, e))? {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                ids.push(name);
            }
        }
        Ok(ids)
    }

    /// Records `child` under `parent` (blocking; not synced, see the module
    /// docs).
    pub(super) fn add_blocking(&self, parent: &str, child: &str) -> io::Result<()> {
        let dir = self.dir.join(parent);
        let marker = dir.join(child);
        let open = |p: &Path| {
            let mut options = private_file_options();
            options.create(true).truncate(false).write(true);
            open_private(&options, p)
        };
        match open(&marker) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_private_dir_all(&dir)?;
                open(&marker).map(drop)
            }
            other => other.map(drop),
        }
    }

    /// Removes `child` from `parent`'s entries (not synced either).
    pub(super) async fn remove(&self, parent: &str, child: &str) -> Result<(), StoreError> {
        let marker = self.dir.join(parent).join(child);
        match tokio::fs::remove_file(&marker).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&marker, e)),
        }
    }

    /// Makes the index hold exactly `expected`, touching only what differs
    /// (files of the old `<parent>.json` list layout included), and syncs
    /// every directory it changed.
    pub(super) async fn reconcile(&self, expected: Expected) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        blocking(&self.dir, move || reconcile(&dir, expected)).await
    }
}

fn reconcile(root: &Path, mut expected: Expected) -> io::Result<()> {
    let mut root_changed = false;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        if !entry.file_type()?.is_dir() {
            std::fs::remove_file(&path)?;
            root_changed = true;
            continue;
        }
        let parent = entry.file_name().to_string_lossy().into_owned();
        let want = expected.remove(&parent).unwrap_or_default();
        if want.is_empty() {
            std::fs::remove_dir_all(&path)?;
            root_changed = true;
        } else {
            sync_children(&path, &want)?;
        }
    }
    for (parent, want) in expected {
        if !want.is_empty() {
            let path = root.join(parent);
            create_private_dir_all(&path)?;
            sync_children(&path, &want)?;
            root_changed = true;
        }
    }
    if root_changed {
        std::fs::File::open(root)?.sync_all()?;
    }
    Ok(())
}

/// Makes the parent directory `dir` hold exactly the markers `want`.
fn sync_children(dir: &Path, want: &HashSet<String>) -> io::Result<()> {
    let mut have = HashSet::new();
    let mut changed = false;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if want.contains(&name) {
            have.insert(name);
        } else {
            std::fs::remove_file(dir.join(&name))?;
            changed = true;
        }
    }
    for child in want.difference(&have) {
        create_private_file(&dir.join(child))?;
        changed = true;
    }
    if changed {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
