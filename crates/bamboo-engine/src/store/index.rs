//! The per-parent child index: `<data>/children/<parent>/<child>`, one empty
//! marker file per child. A cache over the session files, rebuilt from them
//! when missing; always a superset of the real children (see
//! `FileStore::create`).
//!
//! Markers instead of one list file per parent: adding a child is one create
//! plus one directory fsync, with no read-modify-write of the whole list, so
//! concurrent creates under one parent neither serialise nor cost O(n) each.

use std::path::{Path, PathBuf};

use super::file::{io_err, sync_dir};
use super::StoreError;

#[derive(Debug)]
pub(super) struct ChildIndex {
    dir: PathBuf,
}

impl ChildIndex {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Whether `dir` holds an index of the old layout (`<parent>.json` list
    /// files), which must be rebuilt.
    pub(super) async fn is_legacy(&self) -> Result<bool, StoreError> {
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| io_err(&self.dir, e))?;
        while let Some(e) = entries
            .next_entry()
            .await
            .map_err(|e| io_err(&self.dir, e))?
        {
            if e.file_type().await.is_ok_and(|t| t.is_file()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The children recorded under `parent`, in no particular order.
    pub(super) async fn read(&self, parent: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.dir.join(parent);
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
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

    /// Records `child` under `parent`, durably.
    pub(super) async fn add(&self, parent: &str, child: &str) -> Result<(), StoreError> {
        let (root, dir) = (self.dir.clone(), self.dir.join(parent));
        let marker = dir.join(child);
        let shown = marker.clone();
        blocking(&shown, move || {
            let fresh_dir = !dir.exists();
            std::fs::create_dir_all(&dir)?;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&marker)?;
            std::fs::File::open(&dir)?.sync_all()?;
            if fresh_dir {
                std::fs::File::open(&root)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    /// Rewrites `parent`'s entries as exactly `ids` (index rebuild).
    pub(super) async fn write(&self, parent: &str, ids: Vec<String>) -> Result<(), StoreError> {
        for id in ids {
            self.add(parent, &id).await?;
        }
        Ok(())
    }

    pub(super) async fn remove(&self, parent: &str, child: &str) -> Result<(), StoreError> {
        let dir = self.dir.join(parent);
        match tokio::fs::remove_file(dir.join(child)).await {
            Ok(()) => sync_dir(dir).await,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&dir, e)),
        }
    }

    pub(super) async fn clear(&self) -> Result<(), StoreError> {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_err(&self.dir, e))
    }
}

async fn blocking(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| io_err(path, e)),
        Err(join) => Err(io_err(path, std::io::Error::other(join.to_string()))),
    }
}
