//! The default store: every session in one SQLite database under
//! `<data>/sessions/` (see `db`), written by one thread that commits many
//! writes at once (see `writer`), read through a few reading connections
//! beside it, with recently written sessions kept in memory (see `cache`).
//! A data directory of an earlier version is moved into the database when
//! it opens (see `legacy`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use bamboo_domain::Session;
use rusqlite::Connection;
use tokio::sync::Mutex;

use super::cache::{Cached, SessionCache};
use super::db::{self, Row, Sharing};
use super::legacy;
use super::private;
use super::query::{Query, Summary};
use super::writer::{Done, Op, Sync, Writer};
use super::{check_id, Mutator, SessionStore, StoreError};

/// Connections that read beside the writing one.
const READERS: usize = 2;

/// The default [`SessionStore`], in the data directory's files.
#[derive(Debug)]
pub struct FileStore {
    /// An exclusive lock on `<data>/engine.lock`, held while the store lives:
    /// two engines on one directory would mark each other's runs orphaned and
    /// interleave their writes.
    _lock: std::fs::File,
    db: PathBuf,
    cache: SessionCache,
    locks: LockMap,
    writer: Writer,
    readers: Vec<Arc<SyncMutex<Connection>>>,
    next_reader: AtomicUsize,
    /// The writing thread's connection: a test holds it to stop commits.
    #[cfg(test)]
    writing: Arc<SyncMutex<Connection>>,
}

impl Drop for FileStore {
    fn drop(&mut self) {
        // The writes in flight finish and the database closes before the
        // directory's lock goes.
        self.writer.close();
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
    /// Opens (creating if needed) a store under `data_dir`, moving the
    /// sessions of an earlier version's layout into it. Opening reads no
    /// session, whatever the directory holds.
    ///
    /// Fails with [`StoreError::InUse`] while another store has `data_dir`
    /// open, in this process or another.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let data = data_dir.as_ref().to_path_buf();
        let sessions = data.join("sessions");
        let d = data.clone();
        blocking(&data, move || {
            private::claim_data_dir(&d).map_err(|e| StoreError::from_io(&d, e))
        })
        .await?;
        let s = sessions.clone();
        blocking(&sessions, move || {
            private::create_private_dir_all(&s).map_err(|e| StoreError::from_io(&s, e))
        })
        .await?;
        let lock = lock_dir(&data)?;
        let path = sessions.join(db::FILE);
        let p = path.clone();
        let (conn, sharing) = blocking(&path, move || db::open_writer(&p)).await?;
        let conn = Arc::new(SyncMutex::new(conn));
        let (d, s, p, c) = (data.clone(), sessions, path.clone(), conn.clone());
        blocking(&path, move || migrate(&d, &s, &p, &c)).await?;
        let mut readers = Vec::new();
        if sharing == Sharing::Shared {
            for _ in 0..READERS {
                let p = path.clone();
                match blocking(&path, move || db::open_reader(&p)).await? {
                    Some(c) => readers.push(Arc::new(SyncMutex::new(c))),
                    None => break,
                }
            }
        }
        if readers.is_empty() {
            // Exclusive: the one connection also reads.
            readers.push(conn.clone());
        }
        #[cfg(test)]
        let writing = conn.clone();
        let writer =
            Writer::start(conn, path.clone()).map_err(|e| StoreError::from_io(&path, e))?;
        Ok(Self {
            _lock: lock,
            db: path,
            cache: SessionCache::default(),
            locks: LockMap::default(),
            writer,
            readers,
            next_reader: AtomicUsize::new(0),
            #[cfg(test)]
            writing,
        })
    }

    /// Holds the writing connection (on a thread of its own): no write
    /// commits until the returned sender is dropped.
    #[cfg(test)]
    pub(super) fn stall_writes(&self) -> std::sync::mpsc::Sender<()> {
        let (locked, is_locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let conn = self.writing.clone();
        std::thread::spawn(move || {
            let _held = conn.lock().unwrap_or_else(|p| p.into_inner());
            let _ = locked.send(());
            let _ = released.recv();
        });
        let _ = is_locked.recv();
        release
    }

    /// Reads session `id` of the data directory `data_dir` without opening
    /// the store: no lock is taken and nothing is written, so it works while
    /// an engine holds the directory, and on a full or read-only disk. It
    /// reads what is stored now (an engine may change it right after).
    /// Blocking: one small read.
    pub fn peek(data_dir: impl AsRef<Path>, id: &str) -> Result<Option<Session>, StoreError> {
        check_id(id)?;
        let sessions = data_dir.as_ref().join("sessions");
        let path = sessions.join(db::FILE);
        let Some(c) = db::open_reader(&path)? else {
            return legacy::peek(&sessions, id);
        };
        match db::doc(&c, id).map_err(|e| db::err(&path, e))? {
            Some(doc) => db::parse(&path, id, &doc).map(Some),
            None => Ok(None),
        }
    }

    /// The ids of the sessions stored in `data_dir`, sorted, read like
    /// [`FileStore::peek`]: no lock, no write, so it works while an engine
    /// holds the directory. A directory with no `sessions/` folder holds
    /// none. Blocking.
    pub fn peek_ids(data_dir: impl AsRef<Path>) -> Result<Vec<String>, StoreError> {
        let sessions = data_dir.as_ref().join("sessions");
        let path = sessions.join(db::FILE);
        let Some(c) = db::open_reader(&path)? else {
            return legacy::peek_ids(&sessions);
        };
        db::ids(&c).map_err(|e| db::err(&path, e))
    }

    /// The sessions of `data_dir` that `query` selects, read like
    /// [`FileStore::peek`]: no lock, no write. Blocking.
    pub fn peek_query(
        data_dir: impl AsRef<Path>,
        query: &Query,
    ) -> Result<Vec<Summary>, StoreError> {
        let sessions = data_dir.as_ref().join("sessions");
        let path = sessions.join(db::FILE);
        let Some(c) = db::open_reader(&path)? else {
            let mut out = Vec::new();
            for id in legacy::peek_ids(&sessions)? {
                if let Some(s) = legacy::peek(&sessions, &id)? {
                    if query.selects(&s) {
                        out.push(Summary::of(&s));
                    }
                }
            }
            query.arrange(&mut out);
            return Ok(out);
        };
        db::summaries(&c, query).map_err(|e| db::err(&path, e))
    }

    /// How many sessions of `data_dir` `query` selects (its limit aside),
    /// read like [`FileStore::peek`]. Blocking.
    pub fn peek_count(data_dir: impl AsRef<Path>, query: &Query) -> Result<u64, StoreError> {
        let path = data_dir.as_ref().join("sessions").join(db::FILE);
        if !path.exists() {
            let all = Query {
                limit: None,
                ..query.clone()
            };
            return Ok(Self::peek_query(data_dir, &all)?.len() as u64);
        }
        let c = db::open_reader(&path)?
            .ok_or_else(|| StoreError::from_io(&path, std::io::ErrorKind::NotFound.into()))?;
        db::count(&c, query).map_err(|e| db::err(&path, e))
    }

    /// Runs `f` on a reading connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = Arc::clone(&self.readers[i]);
        let path = self.db.clone();
        blocking(&self.db, move || {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&c).map_err(|e| db::err(&path, e))
        })
        .await
    }

    /// The stored session `id`. Only a caller holding `id`'s lock may fill
    /// the cache: an unlocked read can race a write and would cache an
    /// older version.
    async fn get(&self, id: &str, fill: Fill) -> Result<Option<Session>, StoreError> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(Some(cached));
        }
        let key = id.to_owned();
        let Some(doc) = self.read(move |c| db::doc(c, &key)).await? else {
            return Ok(None);
        };
        let session = db::parse(&self.db, id, &doc)?;
        if fill == Fill::Locked {
            self.remember(&session, doc.len());
        }
        Ok(Some(session))
    }

    /// Caches `session` as now stored, its JSON `len` bytes long.
    fn remember(&self, session: &Session, len: usize) {
        let cached = Cached {
            doc: session.clone(),
            doc_len: len as u64,
        };
        self.cache.put(&session.id, cached);
    }

    fn row(&self, session: &Session) -> Result<Row, StoreError> {
        Row::of(session).map_err(|e| StoreError::Corrupt {
            path: format!("{} (session {})", self.db.display(), session.id),
            reason: format!("cannot serialise: {e}"),
        })
    }

    /// Writes `session` whole and caches it.
    async fn put(&self, session: &Session) -> Result<(), StoreError> {
        let row = self.row(session)?;
        let len = row.doc.len();
        self.writer.write(Op::Put(row)).await?;
        self.remember(session, len);
        Ok(())
    }

    /// Sessions `query` selects, whole, in its order.
    async fn sessions(&self, query: Query) -> Result<Vec<Session>, StoreError> {
        let docs = self.read(move |c| db::docs(c, &query)).await?;
        docs.iter()
            .map(|(id, doc)| db::parse(&self.db, id, doc))
            .collect()
    }
}

/// Moves what an earlier version left in `sessions/` into the database
/// through `conn` (blocking).
fn migrate(
    data: &Path,
    sessions: &Path,
    path: &Path,
    conn: &SyncMutex<Connection>,
) -> Result<(), StoreError> {
    let found = legacy::scan(sessions).map_err(|e| StoreError::from_io(sessions, e))?;
    if found.is_empty() && !data.join("children").exists() {
        return Ok(());
    }
    let c = conn.lock().unwrap_or_else(|p| p.into_inner());
    let moved = (|| {
        c.execute_batch("BEGIN IMMEDIATE")?;
        for s in &found.sessions {
            let row = Row::of(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            db::import(&c, &row)?;
        }
        c.execute_batch("COMMIT")
    })();
    if let Err(e) = moved {
        if !c.is_autocommit() {
            let _ = c.execute_batch("ROLLBACK");
        }
        return Err(db::err(path, e));
    }
    tracing::info!(sessions = found.sessions.len(), db = %path.display(),
        "moved the session files of an earlier version into the store");
    legacy::remove(data, sessions, &found.done).map_err(|e| StoreError::from_io(sessions, e))
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

/// Whether a read holds the session's lock (see `FileStore::get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Locked,
    Unlocked,
}

#[async_trait]
impl SessionStore for FileStore {
    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        check_id(&session.id)?;
        if let Some(parent) = &session.parent_id {
            check_id(parent)?;
        }
        let lock = self.locks.get(&session.id);
        let _held = lock.lock().await;
        if self.cache.contains(&session.id) {
            return Err(StoreError::AlreadyExists(session.id.clone()));
        }
        let row = self.row(session)?;
        let len = row.doc.len();
        match self.writer.write(Op::Create(row)).await? {
            Done::Exists => Err(StoreError::AlreadyExists(session.id.clone())),
            _ => {
                self.remember(session, len);
                Ok(())
            }
        }
    }

    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        check_id(&session.id)?;
        if let Some(parent) = &session.parent_id {
            check_id(parent)?;
        }
        let lock = self.locks.get(&session.id);
        let _held = lock.lock().await;
        self.put(session).await
    }

    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
        check_id(id)?;
        self.get(id, Fill::Unlocked).await
    }

    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        check_id(id)?;
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let mut session = self
            .get(id, Fill::Locked)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if mutate(&mut session) {
            session.updated_at = chrono::Utc::now();
            self.put(&session).await?;
        }
        Ok(session)
    }

    async fn update_soon(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        check_id(id)?;
        let held = self.locks.get(id).lock_owned().await;
        let mut session = self
            .get(id, Fill::Locked)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if !mutate(&mut session) {
            return Ok(session);
        }
        session.updated_at = chrono::Utc::now();
        let row = self.row(&session)?;
        let len = row.doc.len();
        let answered = self.writer.send(Op::Put(row), Sync::Later)?;
        self.remember(&session, len);
        // The session stays locked until the write is in the database: the
        // cache may drop it meanwhile, and the next update must then read
        // this version, not the one before.
        let id = id.to_owned();
        tokio::spawn(async move {
            let _held = held;
            match answered.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(session = %id, error = %e, "a change not waited for could not be stored; the session's next write stores it")
                }
                Err(_) => {
                    tracing::warn!(session = %id, "the store closed before a change not waited for was written")
                }
            }
        });
        Ok(session)
    }

    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError> {
        check_id(parent_id)?;
        self.sessions(Query::children_of(parent_id)).await
    }

    async fn list_project(&self, key: &str) -> Result<Vec<Session>, StoreError> {
        self.sessions(Query {
            project: Some(key.to_owned()),
            ..Query::default()
        })
        .await
    }

    async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
        self.read(db::ids).await
    }

    async fn query(&self, query: &Query) -> Result<Vec<Summary>, StoreError> {
        let q = query.clone();
        self.read(move |c| db::summaries(c, &q)).await
    }

    async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        let q = query.clone();
        self.read(move |c| db::count(c, &q)).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        check_id(id)?;
        let lock = self.locks.get(id);
        let held = lock.lock().await;
        let done = self.writer.write(Op::Delete(id.to_owned())).await?;
        self.cache.forget(id);
        drop(held);
        self.locks.forget(id);
        Ok(done == Done::Written)
    }
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::from_io(path, source)
}

/// Runs blocking work `f` off the async threads; a panic or a cancelled
/// task names `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(join) => Err(io_err(path, std::io::Error::other(join.to_string()))),
    }
}
