//! Session store (S3): save, load, list children, delete, query, behind a
//! trait so an application can bring its own. [`FileStore`] is the default.
//!
//! Concurrency contract: every mutation of an existing session goes through
//! [`SessionStore::update`], a read-modify-write that the store serialises per
//! session, so two concurrent updates never lose one another.
//!
//! The default store keeps every session in one SQLite database in WAL mode,
//! `<data>/sessions/store.db` (see `file`): a row per session holding the
//! whole session as JSON beside the columns listings ask by (parent,
//! project key, status, title, times), each indexed, so a listing reads only
//! what it shows. Writes go through one thread that commits whatever waits
//! in one transaction (`writer`): many creates and status writes share one
//! `fsync`, and each caller gets its answer only once its write is durable
//! (but for [`SessionStore::update_soon`], which does not wait, and whose
//! write syncs with the next one that does).
//! Directories written by earlier versions (one file per session,
//! `sessions/<id>.jsonl`) are moved into the database when the store opens
//! (`legacy`).

mod cache;
mod db;
mod deferred;
mod file;
mod legacy;
mod log;
pub(crate) mod private;
mod query;
mod writer;

pub(crate) use deferred::{Deferred, Ending};
pub use file::FileStore;
pub use query::{Parent, Query, Summary};

use async_trait::async_trait;
use bamboo_domain::Session;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The id cannot name a file (empty, path separators, leading dot).
    #[error(
        "session id {0:?} is not valid: use 1-200 characters without '/', '\\' or a leading '.'"
    )]
    InvalidId(String),
    /// Another store (another engine, maybe in another process) has the data
    /// directory open.
    #[error("data directory {0} is in use by another engine: stop that engine, or give this one its own data directory")]
    InUse(String),
    /// `create` of an id that already exists.
    #[error("session {0} already exists: pick a fresh id")]
    AlreadyExists(String),
    /// `update` of an id that does not exist.
    #[error("session {0} not found")]
    NotFound(String),
    /// A session file exists but does not parse.
    #[error("session file {path} is corrupt ({reason}): restore it from backup or delete it")]
    Corrupt {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// The disk (or the user's quota) holding the data directory is full.
    /// Nothing of the refused write counts: the session is as it was before.
    #[error("no space left for {path} (the disk is full, or the quota used up): free space in the data directory, then try again")]
    OutOfSpace {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file system refused the engine's user, or is mounted read-only.
    #[error("no permission to write {path}: the data directory must be writable by the user running the engine")]
    PermissionDenied {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure of the file system.
    #[error("session store I/O failed on {path}: {source}; check the data directory's permissions and free space")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The failure of an operation on `path` that the OS refused with `source`,
    /// sorted by what the operator has to do about it.
    pub fn from_io(path: &std::path::Path, source: std::io::Error) -> Self {
        let path = path.display().to_string();
        use std::io::ErrorKind as K;
        match source.kind() {
            K::StorageFull | K::QuotaExceeded => Self::OutOfSpace { path, source },
            K::PermissionDenied | K::ReadOnlyFilesystem => Self::PermissionDenied { path, source },
            _ => Self::Io { path, source },
        }
    }

    /// Whether the store refused because its disk is full: the same call can
    /// succeed once space is freed.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, Self::OutOfSpace { .. })
    }
}

/// A mutation applied under the store's per-session lock. Returns `true` to
/// persist the changed session, `false` to leave the stored one untouched.
pub type Mutator<'a> = Box<dyn FnOnce(&mut Session) -> bool + Send + 'a>;

/// Where sessions live.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Persists a new session; fails if the id exists.
    async fn create(&self, session: &Session) -> Result<(), StoreError>;
    /// Persists a session whole, replacing any stored version (last writer wins;
    /// prefer [`SessionStore::update`] for changes to an existing session).
    async fn save(&self, session: &Session) -> Result<(), StoreError>;
    /// Loads one session; `None` when it does not exist.
    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Atomic read-modify-write of one session, serialised per session. Returns
    /// the session as stored afterwards.
    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError>;
    /// [`SessionStore::update`] for a change a crash may lose (a child's
    /// `running` mark: a child that reads as not started is run again): the
    /// store may answer before the change is on disk. Every later read and
    /// update through this store sees it. A write that then fails is
    /// logged; the session's next update writes the change again. This
    /// default is [`SessionStore::update`].
    async fn update_soon(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        self.update(id, mutate).await
    }
    /// The children of `parent_id`, oldest first.
    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError>;
    /// Every stored session id (used by start-up recovery).
    async fn list_ids(&self) -> Result<Vec<String>, StoreError>;
    /// The sessions of project `key` (roots and children), oldest first
    /// (S5). This default reads every session; a store with an index
    /// answers from it.
    async fn list_project(&self, key: &str) -> Result<Vec<Session>, StoreError> {
        let mut out = Vec::new();
        for id in self.list_ids().await? {
            if let Some(s) = self.load(&id).await? {
                if s.project_key.as_deref() == Some(key) {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }
    /// Removes a session; `false` when it did not exist.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// The sessions that `query` selects, as listings show them (no
    /// transcript), in its order. This default reads every session and
    /// leaves out, with a warning, those it cannot read; a store with
    /// indices answers from them.
    async fn query(&self, query: &Query) -> Result<Vec<Summary>, StoreError> {
        let mut out = Vec::new();
        for id in self.list_ids().await? {
            match self.load(&id).await {
                Ok(Some(s)) if query.selects(&s) => out.push(Summary::of(&s)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "an unreadable session left out of a listing")
                }
            }
        }
        query.arrange(&mut out);
        Ok(out)
    }
    /// How many sessions `query` selects, its limit aside.
    async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        let all = Query {
            limit: None,
            ..query.clone()
        };
        Ok(self.query(&all).await?.len() as u64)
    }
}

/// Checks that `id` can safely name a file.
pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && !id.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_legacy;
