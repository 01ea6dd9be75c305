//! The database under the default store: `<data>/sessions/store.db`, SQLite
//! in WAL mode with `synchronous=FULL` (a commit returns once the WAL is
//! synced), one table of sessions:
//!
//! | column | what |
//! | --- | --- |
//! | `id` | session id (unique) |
//! | `parent_id`, `project_key`, `status`, `title`, `last_error` | what listings select and show |
//! | `created_at`, `updated_at` | nanoseconds since the epoch, UTC |
//! | `doc` | the whole session, JSON |
//!
//! indexed by parent, project key, status and creation time (each with
//! `created_at, id`, the listings' order). `PRAGMA user_version` is the
//! schema version.
//!
//! A data directory on a full disk still opens: when SQLite cannot make its
//! shared-memory file (`store.db-shm`, which needs a few pages), the store
//! opens in exclusive locking mode, which keeps that index in memory (other
//! processes then cannot read until the engine stops; they need no lock for
//! anything else).

use std::path::Path;
use std::time::Duration;

use bamboo_domain::{ChildStatus, Session};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql};

use super::query::{Parent, Query, Summary};
use super::StoreError;

/// The database's file name under `sessions/`.
pub(super) const FILE: &str = "store.db";

/// The schema this code writes; older ones are upgraded at open.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY NOT NULL,
    parent_id TEXT,
    project_key TEXT,
    status TEXT,
    title TEXT NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_parent ON sessions (parent_id, created_at, id);
CREATE INDEX IF NOT EXISTS sessions_by_project ON sessions (project_key, created_at, id)
    WHERE project_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, created_at, id)
    WHERE status IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_by_time ON sessions (created_at, id);
PRAGMA user_version = 1;
";

/// How long a statement waits for a lock another connection holds (a
/// checkpoint, a reader in another process opening the WAL).
const BUSY: Duration = Duration::from_secs(10);

/// How the writing connection shares the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sharing {
    /// Other connections, in this process or another, read beside it.
    Shared,
    /// The disk had no room for the shared-memory file: this connection
    /// is the only one (see the module docs).
    Exclusive,
}

/// Opens (creating) the database at `path` for writing, and brings its
/// schema up to date.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, Sharing), StoreError> {
    // Made owner-only first: SQLite gives its WAL and shared-memory files
    // the database file's mode.
    let mut options = super::private::private_file_options();
    options.create(true).truncate(false).write(true);
    super::private::open_private(&options, path).map_err(|e| StoreError::from_io(path, e))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open = |exclusive: bool| -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(path, flags)?;
        c.busy_timeout(BUSY)?;
        if exclusive {
            c.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        }
        set_up(&c)?;
        Ok(c)
    };
    match open(false) {
        Ok(c) => Ok((c, Sharing::Shared)),
        Err(first) if is_full(&first) || is_io(&first) => match open(true) {
            Ok(c) => {
                tracing::warn!(db = %path.display(), error = %first,
                    "no room for the store's shared-memory file: sessions are readable by this engine only until it stops");
                Ok((c, Sharing::Exclusive))
            }
            Err(_) => Err(err(path, first)),
        },
        Err(e) => Err(err(path, e)),
    }
}

/// WAL, synced commits, and the schema (written only when missing, so an
/// existing database opens on a full disk).
fn set_up(c: &Connection) -> rusqlite::Result<()> {
    let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        c.pragma_update(None, "journal_mode", "WAL")?;
    }
    c.pragma_update(None, "synchronous", "FULL")?;
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < VERSION {
        c.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))?;
    }
    Ok(())
}

/// Opens the database at `path` for reading only. `None` when there is none.
pub(super) fn open_reader(path: &Path) -> Result<Option<Connection>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags).map_err(|e| err(path, e))?;
    c.busy_timeout(BUSY).map_err(|e| err(path, e))?;
    Ok(Some(c))
}

fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

fn is_io(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::CannotOpen)
    )
}

/// The store's error for SQLite's `e` on the database `path`, sorted like
/// the OS errors (S7).
pub(super) fn err(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    use std::io::{Error, ErrorKind};
    let shown = path.display().to_string();
    match e.sqlite_error_code() {
        Some(C::DiskFull) => StoreError::OutOfSpace {
            path: shown,
            source: Error::new(ErrorKind::StorageFull, e.to_string()),
        },
        Some(C::ReadOnly | C::PermissionDenied | C::AuthorizationForStatementDenied) => {
            StoreError::PermissionDenied {
                path: shown,
                source: Error::new(ErrorKind::PermissionDenied, e.to_string()),
            }
        }
        Some(C::DatabaseCorrupt | C::NotADatabase) => StoreError::Corrupt {
            path: shown,
            reason: e.to_string(),
        },
        _ => StoreError::Io {
            path: shown,
            source: Error::other(e.to_string()),
        },
    }
}

/// A session as one row.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) id: String,
    parent_id: Option<String>,
    project_key: Option<String>,
    status: Option<&'static str>,
    title: String,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    /// The session as JSON.
    pub(super) doc: String,
}

/// Nanoseconds since the epoch (saturating outside 1677-2262).
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

impl Row {
    /// `s` as a row.
    pub(super) fn of(s: &Session) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: s.id.clone(),
            parent_id: s.parent_id.clone(),
            project_key: s.project_key.clone(),
            status: s.status().map(ChildStatus::as_str),
            title: s.title.clone(),
            last_error: s.child.as_ref().and_then(|c| c.last_error.clone()),
            created_at: nanos(s.created_at),
            updated_at: nanos(s.updated_at),
            doc: serde_json::to_string(s)?,
        })
    }

    fn params(&self) -> [&dyn ToSql; 9] {
        [
            &self.id,
            &self.parent_id,
            &self.project_key,
            &self.status,
            &self.title,
            &self.last_error,
            &self.created_at,
            &self.updated_at,
            &self.doc,
        ]
    }
}

const INSERT: &str = "INSERT INTO sessions
    (id, parent_id, project_key, status, title, last_error, created_at, updated_at, doc)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Inserts `row`; `false` (nothing written) when its id exists.
pub(super) fn insert(c: &Connection, row: &Row) -> rusqlite::Result<bool> {
    let sql = format!("{INSERT} ON CONFLICT (id) DO NOTHING");
    let n = c.prepare_cached(&sql)?.execute(&row.params()[..])?;
    Ok(n == 1)
}

/// Changes what a session's life changes (status, title, error, time,
/// document) when the stored row has `row`'s parent, project key and
/// creation time; `false` when no such row exists.
const CHANGE: &str = "UPDATE sessions SET status = ?4, title = ?5, last_error = ?6,
    updated_at = ?8, doc = ?9
    WHERE id = ?1 AND parent_id IS ?2 AND project_key IS ?3 AND created_at = ?7";

/// Inserts or replaces `row`.
///
/// Most writes change a session that exists and keep its parent, project
/// and creation time: those set only the columns that change, so SQLite
/// rewrites only the status index besides the row. Setting every column
/// rewrote all four indexes' entries, even unchanged ones: 6 or 7 pages
/// of the log per write instead of 1 to 3.
pub(super) fn put(c: &Connection, row: &Row) -> rusqlite::Result<()> {
    if c.prepare_cached(CHANGE)?.execute(&row.params()[..])? == 1 {
        return Ok(());
    }
    let sql = format!(
        "{INSERT} ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id,
        project_key = excluded.project_key, status = excluded.status, title = excluded.title,
        last_error = excluded.last_error, created_at = excluded.created_at,
        updated_at = excluded.updated_at, doc = excluded.doc"
    );
    c.prepare_cached(&sql)?.execute(&row.params()[..])?;
    Ok(())
}

/// Inserts `row` unless its id exists (a migration: what the database holds
/// is newer).
pub(super) fn import(c: &Connection, row: &Row) -> rusqlite::Result<()> {
    insert(c, row).map(drop)
}

/// Deletes session `id`; `false` when there was none.
pub(super) fn delete(c: &Connection, id: &str) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
        .execute([id])?;
    Ok(n == 1)
}

/// The JSON of session `id`.
pub(super) fn doc(c: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached("SELECT doc FROM sessions WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

/// Every session id, sorted.
pub(super) fn ids(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare_cached("SELECT id FROM sessions ORDER BY id")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// The JSON of the sessions `q` selects, in its order.
pub(super) fn docs(c: &Connection, q: &Query) -> rusqlite::Result<Vec<(String, String)>> {
    select(c, "id, doc", q, |r| Ok((r.get(0)?, r.get(1)?)))
}

/// The summaries of the sessions `q` selects, in its order.
pub(super) fn summaries(c: &Connection, q: &Query) -> rusqlite::Result<Vec<Summary>> {
    let cols = "id, parent_id, project_key, title, status, last_error, created_at, updated_at";
    select(c, cols, q, |r| {
        let status: Option<String> = r.get(4)?;
        Ok(Summary {
            id: r.get(0)?,
            parent_id: r.get(1)?,
            project_key: r.get(2)?,
            title: r.get(3)?,
            // A status this version does not know reads as none.
            status: status.and_then(|s| s.parse().ok()),
            last_error: r.get(5)?,
            created_at: time(r.get(6)?),
            updated_at: time(r.get(7)?),
        })
    })
}

/// How many sessions `q` selects, its limit and order aside.
pub(super) fn count(c: &Connection, q: &Query) -> rusqlite::Result<u64> {
    let all = Query {
        limit: None,
        ..q.clone()
    };
    let n: Vec<i64> = select(c, "count(*)", &all, |r| r.get(0))?;
    Ok(n.first().copied().unwrap_or(0).max(0) as u64)
}

/// Runs `SELECT cols` for `q`, mapping each row with `map`.
fn select<T>(
    c: &Connection,
    cols: &str,
    q: &Query,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let mut arg = |conds: &mut Vec<String>, cond: &str, v: Box<dyn ToSql>| {
        args.push(v);
        conds.push(cond.replace('?', &format!("?{}", args.len())));
    };
    match &q.parent {
        Parent::Any => {}
        Parent::None => conds.push("parent_id IS NULL".into()),
        Parent::Of(p) => arg(&mut conds, "parent_id = ?", Box::new(p.clone())),
    }
    if let Some(p) = &q.project {
        arg(&mut conds, "project_key = ?", Box::new(p.clone()));
    }
    if let Some(s) = q.status {
        arg(&mut conds, "status = ?", Box::new(s.as_str()));
    }
    if let Some(t) = q.since {
        arg(&mut conds, "created_at >= ?", Box::new(nanos(t)));
    }
    if let Some(t) = q.until {
        arg(&mut conds, "created_at < ?", Box::new(nanos(t)));
    }
    if let Some((t, id)) = &q.after {
        let op = if q.newest_first { "<" } else { ">" };
        args.push(Box::new(nanos(*t)));
        args.push(Box::new(id.clone()));
        let (a, b) = (args.len() - 1, args.len());
        conds.push(format!("(created_at, id) {op} (?{a}, ?{b})"));
    }
    let mut sql = format!("SELECT {cols} FROM sessions");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let dir = if q.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY created_at {dir}, id {dir}"));
    if let Some(n) = q.limit {
        sql.push_str(&format!(" LIMIT {}", i64::try_from(n).unwrap_or(i64::MAX)));
    }
    let mut st = c.prepare_cached(&sql)?;
    let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
    let rows = st.query_map(&refs[..], map)?;
    rows.collect()
}

/// Parses a stored session; `Corrupt` names the database and the session.
pub(super) fn parse(path: &Path, id: &str, doc: &str) -> Result<Session, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        path: format!("{} (session {id})", path.display()),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_in_the_insert_match_the_row() {
        let s = Session::new_root("t");
        let row = Row::of(&s).unwrap();
        let c = Connection::open_in_memory().unwrap();
        set_up(&c).unwrap();
        assert!(insert(&c, &row).unwrap());
        assert!(!insert(&c, &row).unwrap(), "a second insert writes nothing");
        let back: Session = serde_json::from_str(&doc(&c, &s.id).unwrap().unwrap()).unwrap();
        assert_eq!(back, s);
        let listed = summaries(&c, &Query::all()).unwrap();
        assert_eq!(listed, vec![Summary::of(&s)]);
        assert!(delete(&c, &s.id).unwrap());
        assert!(!delete(&c, &s.id).unwrap());
    }

    fn child_of(parent: &Session) -> Session {
        Session::new_child(parent, bamboo_domain::ChildInfo::new("r", "a"))
    }

    fn set_status(s: &mut Session, status: ChildStatus) {
        if let Some(c) = s.child.as_mut() {
            c.status = status;
        }
    }

    #[test]
    fn a_put_finds_the_session_by_what_changed_and_what_did_not() {
        let c = Connection::open_in_memory().unwrap();
        set_up(&c).unwrap();
        let root = Session::new_root("t");
        let mut kid = child_of(&root);
        put(&c, &Row::of(&kid).unwrap()).unwrap();
        set_status(&mut kid, ChildStatus::Running);
        kid.title = "renamed".into();
        put(&c, &Row::of(&kid).unwrap()).unwrap();
        let running = summaries(&c, &Query::with_status(ChildStatus::Running)).unwrap();
        assert_eq!(running, vec![Summary::of(&kid)]);
        assert!(summaries(&c, &Query::with_status(ChildStatus::Pending))
            .unwrap()
            .is_empty());
        // A change of project key takes the whole row over.
        kid.project_key = Some("/elsewhere".into());
        put(&c, &Row::of(&kid).unwrap()).unwrap();
        let q = Query {
            project: Some("/elsewhere".into()),
            ..Query::all()
        };
        assert_eq!(summaries(&c, &q).unwrap(), vec![Summary::of(&kid)]);
        assert_eq!(count(&c, &Query::all()).unwrap(), 1);
        let back: Session = serde_json::from_str(&doc(&c, &kid.id).unwrap().unwrap()).unwrap();
        assert_eq!(back, kid);
    }

    #[test]
    fn a_status_change_writes_the_row_and_the_status_index_only() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = open_writer(&dir.path().join(FILE)).unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let root = Session::new_root("t");
        let mut kids: Vec<Session> = (0..2000).map(|_| child_of(&root)).collect();
        c.execute_batch("BEGIN").unwrap();
        for k in &kids {
            put(&c, &Row::of(k).unwrap()).unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
        let wal = dir.path().join(format!("{FILE}-wal"));
        let frames = || std::fs::metadata(&wal).unwrap().len() / (4096 + 24);
        let kid = &mut kids[1234];
        set_status(kid, ChildStatus::Running);
        let before = frames();
        put(&c, &Row::of(kid).unwrap()).unwrap();
        // The row's page, and the status index's pages it leaves and joins.
        let pages = frames() - before;
        assert!(pages <= 3, "a status change wrote {pages} pages");
    }
}
