//! The per-parent child index: `<data>/children/<parent>.json`, a JSON array of
//! child ids, oldest first. A cache over the session files, rebuilt from them
//! when missing; always a superset of the real children (see `FileStore::create`).

use std::path::PathBuf;

use super::file::{io_err, write_atomic, LockMap};
use super::StoreError;

#[derive(Debug)]
pub(super) struct ChildIndex {
    dir: PathBuf,
    locks: LockMap,
}

impl ChildIndex {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            locks: LockMap::default(),
        }
    }

    pub(super) async fn read(&self, parent: &str) -> Result<Vec<String>, StoreError> {
        let path = self.dir.join(format!("{parent}.json"));
        match tokio::fs::read(&path).await {
            // A corrupt index reads as empty; `rebuild_index` repairs it.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    pub(super) async fn write(&self, parent: &str, ids: Vec<String>) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&ids).unwrap_or_default();
        write_atomic(&self.dir, &format!("{parent}.json"), bytes).await
    }

    pub(super) async fn add(&self, parent: &str, child: &str) -> Result<(), StoreError> {
        let lock = self.locks.get(parent);
        let _held = lock.lock().await;
        let mut ids = self.read(parent).await?;
        if !ids.iter().any(|i| i == child) {
            ids.push(child.to_owned());
            self.write(parent, ids).await?;
        }
        Ok(())
    }

    pub(super) async fn remove(&self, parent: &str, child: &str) -> Result<(), StoreError> {
        let lock = self.locks.get(parent);
        let _held = lock.lock().await;
        let mut ids = self.read(parent).await?;
        let before = ids.len();
        ids.retain(|i| i != child);
        if ids.len() != before {
            self.write(parent, ids).await?;
        }
        Ok(())
    }

    pub(super) async fn clear(&self) -> Result<(), StoreError> {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_err(&self.dir, e))
    }
}
