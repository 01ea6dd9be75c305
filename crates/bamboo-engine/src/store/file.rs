//! The default store: one file per session under `<data>/sessions`, a short
//! log of whole JSON documents whose last complete line is the session (see
//! `log`), created on a spare file made ahead of need (see `spares`) or
//! else as a new file whose data and name are synced, and updated by a
//! synced append; plus a per-parent child index, kept in memory and built
//! from the sessions when the store opens (see `index`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use bamboo_domain::Session;
use tokio::sync::Mutex;

use super::cache::SessionCache;
use super::index::{self, ChildIndex, Children};
use super::log::{self, LogError};
use super::private;
use super::spares::{self, Filled, Spares};
use super::{check_id, Mutator, SessionStore, StoreError};

/// File-backed [`SessionStore`].
#[derive(Debug)]
pub struct FileStore {
    /// An exclusive lock on `<data>/engine.lock`, held while the store lives:
    /// two engines on one directory would mark each other's runs orphaned and
    /// interleave their writes.
    _lock: std::fs::File,
    sessions: PathBuf,
    cache: SessionCache,
    index: ChildIndex,
    locks: LockMap,
    /// Session files made ahead of need, so a create syncs only its data.
    spares: Arc<Spares>,
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // A refill in flight must not outlive the store by more than a step:
        // the next store on this directory settles whatever it left.
        self.spares.close();
    }
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
    /// Opens (creating if needed) a store under `data_dir`, migrating
    /// sessions of the earlier one-document layout and building the child
    /// index from the session files. Opening reads every session once.
    ///
    /// Fails with [`StoreError::InUse`] while another store has `data_dir`
    /// open, in this process or another.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let data = data_dir.as_ref().to_path_buf();
        let sessions = data.join("sessions");
        let d = data.clone();
        blocking(&data, move || private::claim_data_dir(&d)).await?;
        let s = sessions.clone();
        blocking(&sessions, move || private::create_private_dir_all(&s)).await?;
        let lock = lock_dir(&data)?;
        let d = data.clone();
        blocking(&data.join("children"), move || index::remove_legacy(&d)).await?;
        let s = sessions.clone();
        let spares = blocking(&sessions, move || Spares::recover(&s)).await?;
        let store = Self {
            _lock: lock,
            sessions,
            cache: SessionCache::default(),
            index: ChildIndex::default(),
            locks: LockMap::default(),
            spares: Arc::new(spares),
        };
        store.migrate_documents().await?;
        store.rebuild_index().await?;
        Ok(store)
    }

    /// Reads session `id` of the data directory `data_dir` without opening
    /// the store: no lock is taken and nothing is written, so it works while
    /// an engine holds the directory, and on a full or read-only disk. It
    /// reads what is stored now (an engine may change it right after).
    /// Blocking: one small file read.
    pub fn peek(data_dir: impl AsRef<Path>, id: &str) -> Result<Option<Session>, StoreError> {
        check_id(id)?;
        let path = data_dir.as_ref().join("sessions").join(file_name(id));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        match log::newest(&bytes) {
            Ok(newest) => Ok(Some(newest.doc)),
            Err(LogError::Empty) => Ok(None),
            Err(LogError::BadLine(reason)) => Err(StoreError::Corrupt {
                path: path.display().to_string(),
                reason,
            }),
        }
    }

    /// The ids of the sessions stored in `data_dir`, read like
    /// [`FileStore::peek`]: no lock, no write, so it works while an engine
    /// holds the directory. A directory with no `sessions/` folder holds none.
    /// Blocking: one directory read.
    pub fn peek_ids(data_dir: impl AsRef<Path>) -> Result<Vec<String>, StoreError> {
        let dir = data_dir.as_ref().join("sessions");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
                continue;
            };
            if check_id(id).is_ok() {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Builds the child index anew from the session files (the sessions are
    /// the source of truth). A session that cannot be read is left out, with
    /// a warning.
    pub async fn rebuild_index(&self) -> Result<(), StoreError> {
        let mut expected = Children::new();
        let mut projects = Children::new();
        for id in self.list_ids().await? {
            match self.read(&id, Fill::Unlocked).await {
                Ok(Some(stored)) => {
                    if let Some(key) = stored.doc.project_key {
                        projects.entry(key).or_default().insert(id.clone());
                    }
                    if let Some(parent) = stored.doc.parent_id {
                        expected.entry(parent).or_default().insert(id);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "session left out of the child index")
                }
            }
        }
        self.index.set(expected, projects);
        Ok(())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.sessions.join(file_name(id))
    }

    /// The stored session and the length of its log's intact part. Only a
    /// caller holding `id`'s lock may fill the cache from the file: an
    /// unlocked read can race a write and would cache an older version.
    async fn read(&self, id: &str, fill: Fill) -> Result<Option<log::Newest<Session>>, StoreError> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(Some(cached));
        }
        let path = self.path(id);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        match log::newest(&bytes) {
            Ok(newest) => {
                if fill == Fill::Locked {
                    self.cache.put(id, newest.clone());
                }
                Ok(Some(newest))
            }
            // A create cut short by a crash: the session never existed.
            Err(LogError::Empty) => {
                tracing::debug!(file = %path.display(), "ignoring a session file with no complete line");
                Ok(None)
            }
            Err(LogError::BadLine(reason)) => Err(StoreError::Corrupt {
                path: path.display().to_string(),
                reason,
            }),
        }
    }

    /// Persists `session` over a log whose intact part is `intact_len` bytes
    /// long: a synced append, or an atomic rewrite when the log has grown.
    async fn write(&self, session: &Session, intact_len: u64) -> Result<(), StoreError> {
        let line = self.line(session)?;
        let line_len = line.len() as u64;
        let new_len = if log::should_compact(intact_len, line_len) {
            self.stage(session.id.as_str(), line)
                .await?
                .commit()
                .await?;
            line_len
        } else {
            let path = self.path(&session.id);
            blocking(&path.clone(), move || log::append(&path, intact_len, &line)).await?;
            intact_len + line_len
        };
        self.remember(session, new_len, line_len);
        Ok(())
    }

    /// Caches `session` as now stored in a log of `intact_len` bytes whose
    /// last line is `doc_len` bytes long.
    fn remember(&self, session: &Session, intact_len: u64, doc_len: u64) {
        let stored = log::Newest {
            doc: session.clone(),
            intact_len,
            doc_len,
        };
        self.cache.put(&session.id, stored);
    }

    /// `session` as one log line: compact JSON and a newline.
    fn line(&self, session: &Session) -> Result<Vec<u8>, StoreError> {
        let mut line = serde_json::to_vec(session).map_err(|e| StoreError::Corrupt {
            path: self.path(&session.id).display().to_string(),
            reason: format!("cannot serialise: {e}"),
        })?;
        line.push(b'\n');
        Ok(line)
    }

    /// The durable temp file of a one-line log, not yet visible.
    async fn stage(&self, id: &str, line: Vec<u8>) -> Result<Staged, StoreError> {
        Staged::write(&self.sessions, &file_name(id), line).await
    }

    /// Creates `session` on the free `spare` (see `spares`): one data sync.
    /// `false` when the session's name exists already or the file system has
    /// no hard links: nothing was written, and [`FileStore::create_new`]
    /// decides.
    async fn create_on_spare(
        &self,
        session: &Session,
        spare: PathBuf,
        line: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let path = self.path(&session.id);
        let (p, s) = (path.clone(), spare.clone());
        match blocking(&path, move || spares::fill(&s, &p, &line)).await? {
            Filled::Written => {}
            Filled::NameTaken => {
                self.spares.put_back(spare);
                return Ok(false);
            }
            Filled::NoLink(e) => {
                tracing::debug!(dir = %self.sessions.display(), error = %e,
                    "no hard links here: sessions are created without spares");
                self.spares.close();
                return Ok(false);
            }
        }
        self.spares.retire(&session.id, spare);
        Ok(true)
    }

    /// Creates `session`'s file the usual way: the data and the new name are
    /// synced side by side.
    async fn create_new(&self, session: &Session, line: Vec<u8>) -> Result<(), StoreError> {
        let (path, dir) = (self.path(&session.id), self.sessions.clone());
        let created = blocking(&path.clone(), move || log::create(&path, &dir, &line)).await?;
        if created == log::Created::AlreadyThere {
            return Err(StoreError::AlreadyExists(session.id.clone()));
        }
        Ok(())
    }

    /// Runs a refill of the spares to its end (tests).
    #[cfg(test)]
    pub(super) async fn refill_spares(&self) {
        let spares = Arc::clone(&self.spares);
        tokio::task::spawn_blocking(move || spares.refill())
            .await
            .unwrap();
    }

    /// How many spares are free (tests).
    #[cfg(test)]
    pub(super) fn free_spares(&self) -> usize {
        self.spares.free()
    }

    /// Turns each `<id>.json` of the earlier one-document layout into a
    /// one-line log. A document that does not parse is left where it is, with
    /// a warning, for an operator to look at.
    async fn migrate_documents(&self) -> Result<(), StoreError> {
        for (id, path) in self.entries(LEGACY_SUFFIX).await? {
            let parsed = match tokio::fs::read(&path).await {
                Ok(bytes) => serde_json::from_slice::<Session>(&bytes).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let session = match parsed {
                Ok(s) if s.id == id => Ok(s),
                Ok(_) => Err("its id differs from its file name".to_owned()),
                Err(why) => Err(why),
            };
            let session = match session {
                Ok(s) => s,
                Err(why) => {
                    tracing::warn!(file = %path.display(), why, "session not migrated");
                    continue;
                }
            };
            let line = self.line(&session)?;
            self.stage(&id, line).await?.commit().await?;
            tokio::fs::remove_file(&path)
                .await
                .map_err(|e| io_err(&path, e))?;
        }
        sync_dir(self.sessions.clone()).await
    }

    /// `(id, path)` of every visible file in `sessions/` named `<id><suffix>`.
    async fn entries(&self, suffix: &str) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let mut dir = tokio::fs::read_dir(&self.sessions)
            .await
            .map_err(|e| io_err(&self.sessions, e))?;
        let mut out = Vec::new();
        while let Some(entry) = dir
            .next_entry()
            .await
            .map_err(|e| io_err(&self.sessions, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(suffix) {
                if !name.starts_with('.') {
                    out.push((id.to_owned(), entry.path()));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Takes the exclusive lock of the data directory `dir`. The OS drops it when
/// the file closes, so a crashed engine never leaves the directory locked.
/// Where the file system has no locks, it warns and goes on unlocked.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join("engine.lock");
    let mut options = private::private_file_options();
    options.create(true).truncate(false).write(true);
    let file = private::open_private(&options, &path).map_err(|e| io_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(dir.display().to_string())),
        // A file system without locks: run, but say what is no longer checked.
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(file = %path.display(), error = %e,
                "cannot lock the data directory; make sure no other engine uses it");
            Ok(file)
        }
    }
}

/// Whether a read holds the session's lock (see `FileStore::read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Locked,
    Unlocked,
}

const SUFFIX: &str = ".jsonl";
const LEGACY_SUFFIX: &str = ".json";

pub(super) fn file_name(id: &str) -> String {
    format!("{id}{SUFFIX}")
}

#[async_trait]
impl SessionStore for FileStore {
    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        check_id(&session.id)?;
        let lock = self.locks.get(&session.id);
        let _held = lock.lock().await;
        if self.cache.get(&session.id).is_some() {
            return Err(StoreError::AlreadyExists(session.id.clone()));
        }
        let line = self.line(session)?;
        let line_len = line.len() as u64;
        if let Some(parent) = &session.parent_id {
            check_id(parent)?;
        }
        let on_spare = match self.spares.take() {
            Some(spare) => self.create_on_spare(session, spare, line.clone()).await?,
            None => false,
        };
        if !on_spare {
            self.create_new(session, line).await?;
        }
        self.index.note(session);
        self.remember(session, line_len, line_len);
        Ok(())
    }

    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        check_id(&session.id)?;
        let lock = self.locks.get(&session.id);
        let _held = lock.lock().await;
        if let Some(parent) = &session.parent_id {
            check_id(parent)?;
        }
        match self.read(&session.id, Fill::Locked).await {
            Ok(Some(stored)) => self.write(session, stored.intact_len).await?,
            // Nothing (or nothing usable) stored: a fresh one-line log.
            Ok(None) | Err(StoreError::Corrupt { .. }) => {
                let line = self.line(session)?;
                let line_len = line.len() as u64;
                self.stage(&session.id, line).await?.commit().await?;
                self.remember(session, line_len, line_len);
            }
            Err(e) => return Err(e),
        }
        self.index.note(session);
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
        check_id(id)?;
        Ok(self.read(id, Fill::Unlocked).await?.map(|n| n.doc))
    }

    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        check_id(id)?;
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let stored = self
            .read(id, Fill::Locked)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        let mut session = stored.doc;
        if mutate(&mut session) {
            session.updated_at = chrono::Utc::now();
            self.write(&session, stored.intact_len).await?;
        }
        Ok(session)
    }

    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError> {
        check_id(parent_id)?;
        let mut out = Vec::new();
        for id in self.index.read(parent_id) {
            // An entry whose session is gone, or changed parent, is skipped.
            match self.read(&id, Fill::Unlocked).await?.map(|n| n.doc) {
                Some(s) if s.parent_id.as_deref() == Some(parent_id) => out.push(s),
                _ => {}
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn list_project(&self, key: &str) -> Result<Vec<Session>, StoreError> {
        let mut out = Vec::new();
        for id in self.index.read_project(key) {
            // An entry whose session is gone, or changed project, is skipped.
            match self.read(&id, Fill::Unlocked).await?.map(|n| n.doc) {
                Some(s) if s.project_key.as_deref() == Some(key) => out.push(s),
                _ => {}
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
        let entries = self.entries(SUFFIX).await?;
        Ok(entries.into_iter().map(|(id, _)| id).collect())
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        check_id(id)?;
        let lock = self.locks.get(id);
        let held = lock.lock().await;
        let Some(session) = self.read(id, Fill::Locked).await?.map(|n| n.doc) else {
            return Ok(false);
        };
        let path = self.path(id);
        self.cache.forget(id);
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_err(&path, e))?;
        // Its spare's name too, or the next open would bring it back.
        if let Some(spare) = self.spares.forget(id) {
            match tokio::fs::remove_file(&spare).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&spare, e)),
            }
        }
        sync_dir(self.sessions.clone()).await?;
        self.index.forget(&session);
        drop(held);
        self.locks.forget(id);
        Ok(true)
    }
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::from_io(path, source)
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
        let written = blocking(&staged.target, move || {
            let r = (|| {
                let mut f = private::create_private_file(&tmp)?;
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
        let target = self.target.clone();
        blocking(&target, move || {
            let r = std::fs::rename(&self.tmp, &self.target)
                .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
            if r.is_err() {
                let _ = std::fs::remove_file(&self.tmp);
            }
            r
        })
        .await
    }
}

/// Runs blocking file work `f` off the async threads; a failure names `path`.
pub(super) async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| io_err(path, e)),
        Err(join) => Err(io_err(path, std::io::Error::other(join.to_string()))),
    }
}

pub(super) async fn sync_dir(dir: PathBuf) -> Result<(), StoreError> {
    blocking(&dir.clone(), move || std::fs::File::open(&dir)?.sync_all()).await
}
