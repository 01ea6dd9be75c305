//! The default store: one JSON document per session under `<data>/sessions`,
//! written atomically and durably (temp file, fsync, rename, fsync dir), plus a
//! per-parent index under `<data>/children` that can be rebuilt from the
//! sessions themselves (and is, when missing or in the old list-file layout).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use bamboo_domain::Session;
use tokio::sync::Mutex;

use super::index::ChildIndex;
use super::{check_id, Mutator, SessionStore, StoreError};

/// File-backed [`SessionStore`].
#[derive(Debug)]
pub struct FileStore {
    sessions: PathBuf,
    index: ChildIndex,
    locks: LockMap,
}

/// Per-key async locks; entries are dropped on delete.
#[derive(Debug, Default)]
struct LockMap(SyncMutex<HashMap<String, Arc<Mutex<()>>>>);

impl LockMap {
    fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_owned()).or_default().clone()
    }

    fn forget(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

impl FileStore {
    /// Opens (creating if needed) a store under `data_dir`. When the index
    /// directory is missing it is rebuilt from the session files.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let sessions = data_dir.as_ref().join("sessions");
        let index_dir = data_dir.as_ref().join("children");
        let rebuild = !index_dir.exists();
        for dir in [&sessions, &index_dir] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err(dir, e))?;
        }
        let store = Self {
            sessions,
            index: ChildIndex::new(index_dir),
            locks: LockMap::default(),
        };
        if rebuild || store.index.is_legacy().await? {
            store.rebuild_index().await?;
        }
        Ok(store)
    }

    /// Rewrites every per-parent index from the session files (the sessions
    /// are the source of truth; the index is a cache).
    pub async fn rebuild_index(&self) -> Result<(), StoreError> {
        let mut by_parent: HashMap<String, Vec<(chrono::DateTime<chrono::Utc>, String)>> =
            HashMap::new();
        for id in self.list_ids().await? {
            if let Some(s) = self.load(&id).await? {
                if let Some(p) = s.parent_id {
                    by_parent.entry(p).or_default().push((s.created_at, s.id));
                }
            }
        }
        self.index.clear().await?;
        for (parent, mut kids) in by_parent {
            kids.sort();
            let ids = kids.into_iter().map(|(_, id)| id).collect();
            self.index.write(&parent, ids).await?;
        }
        Ok(())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.sessions.join(format!("{id}.json"))
    }

    async fn read(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let path = self.path(id);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    async fn write(&self, session: &Session) -> Result<(), StoreError> {
        self.stage(session).await?.commit().await
    }

    /// The durable temp file of `session`, not yet visible.
    async fn stage(&self, session: &Session) -> Result<Staged, StoreError> {
        let bytes = serde_json::to_vec_pretty(session).map_err(|e| StoreError::Corrupt {
            path: self.path(&session.id).display().to_string(),
            reason: format!("cannot serialise: {e}"),
        })?;
        Staged::write(&self.sessions, &format!("{}.json", session.id), bytes).await
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        check_id(&session.id)?;
        let lock = self.locks.get(&session.id);
        let _held = lock.lock().await;
        if tokio::fs::try_exists(self.path(&session.id))
            .await
            .unwrap_or(false)
        {
            return Err(StoreError::AlreadyExists(session.id.clone()));
        }
        // Index entry durable before the session becomes visible: a crash in
        // between leaves a dangling entry (skipped on read), never a child
        // missing from its parent's list. The session's temp file is written
        // and synced meanwhile, so only the rename waits for the index.
        let Some(parent) = &session.parent_id else {
            return self.write(session).await;
        };
        check_id(parent)?;
        let (indexed, staged) =
            tokio::join!(self.index.add(parent, &session.id), self.stage(session));
        let staged = staged?;
        if let Err(e) = indexed {
            staged.discard().await;
            return Err(e);
        }
        staged.commit().await
    }

    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        check_id(&session.id)?;
        let lock = self.locks.get(&session.id);
        let _held = lock.lock().await;
        if let Some(parent) = &session.parent_id {
            check_id(parent)?;
            self.index.add(parent, &session.id).await?;
        }
        self.write(session).await
    }

    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
        check_id(id)?;
        self.read(id).await
    }

    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        check_id(id)?;
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let mut session = self
            .read(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if mutate(&mut session) {
            session.updated_at = chrono::Utc::now();
            self.write(&session).await?;
        }
        Ok(session)
    }

    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError> {
        check_id(parent_id)?;
        let mut out = Vec::new();
        for id in self.index.read(parent_id).await? {
            // Dangling entries (crash between index and session write) are skipped.
            match self.read(&id).await? {
                Some(s) if s.parent_id.as_deref() == Some(parent_id) => out.push(s),
                _ => {}
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut dir = tokio::fs::read_dir(&self.sessions)
            .await
            .map_err(|e| io_err(&self.sessions, e))?;
        let mut ids = Vec::new();
        while let Some(entry) = dir
            .next_entry()
            .await
            .map_err(|e| io_err(&self.sessions, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                if !name.starts_with('.') {
                    ids.push(id.to_owned());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        check_id(id)?;
        let lock = self.locks.get(id);
        let held = lock.lock().await;
        let Some(session) = self.read(id).await? else {
            return Ok(false);
        };
        let path = self.path(id);
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_err(&path, e))?;
        sync_dir(self.sessions.clone()).await?;
        if let Some(parent) = &session.parent_id {
            self.index.remove(parent, id).await?;
        }
        drop(held);
        self.locks.forget(id);
        Ok(true)
    }
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A session file written to a unique temp name and synced, not yet renamed
/// into place. Committing is rename + fsync of the directory, so a crash leaves
/// either the old or the new file, never a torn one.
#[derive(Debug)]
pub(super) struct Staged {
    dir: PathBuf,
    tmp: PathBuf,
    target: PathBuf,
}

impl Staged {
    pub(super) async fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<Self, StoreError> {
        let staged = Self {
            dir: dir.to_path_buf(),
            tmp: dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple())),
            target: dir.join(name),
        };
        let tmp = staged.tmp.clone();
        let written = blocking(name, move || {
            let r = (|| {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        })
        .await;
        written.map(|()| staged)
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        let name = self.target.display().to_string();
        blocking(&name, move || {
            let r = std::fs::rename(&self.tmp, &self.target)
                .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
            if r.is_err() {
                let _ = std::fs::remove_file(&self.tmp);
            }
            r
        })
        .await
    }

    pub(super) async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

async fn blocking(
    name: &str,
    f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| io_err(Path::new(name), e)),
        Err(join) => Err(io_err(
            Path::new(name),
            std::io::Error::other(join.to_string()),
        )),
    }
}

pub(super) async fn sync_dir(dir: PathBuf) -> Result<(), StoreError> {
    let shown = dir.clone();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| io_err(&shown, std::io::Error::other(e.to_string())))?
        .map_err(|e| io_err(&shown, e))
}
