//! Group commit: one thread writes the database, taking every write that
//! waits into one transaction, so writes made together share one commit
//! and its one WAL `fsync` (the disk's latency, about 0.7 ms here, is paid
//! once per batch, not once per write). While a commit syncs, the next
//! writes queue and go together in the next one.
//!
//! Each caller is answered only after the commit holding its write
//! returned: what the store says is stored survives a crash or a power
//! cut (S3, S6). A write sent with [`Sync::Later`] is the exception, for
//! what a crash may lose (a child's `running` mark): a batch of only such
//! writes commits without the sync (`synchronous=NORMAL`), so it is in the
//! WAL, safe from a crash of the process, and made durable by the next
//! synced commit (the WAL is one file, synced whole, and read back only up
//! to its first torn frame). A commit that fails (a full disk) fails every write in it;
//! a write that fails on its own (never expected) makes the batch retry one
//! write per transaction, so it fails alone.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::db::{self, Row};
use super::StoreError;

/// Writes taken into one transaction at most.
const BATCH: usize = 512;

/// One write.
#[derive(Debug)]
pub(super) enum Op {
    /// Insert a new session: fails as [`Done::Exists`] when the id is taken.
    Create(Row),
    /// Insert or replace a session.
    Put(Row),
    /// Delete a session.
    Delete(String),
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    /// Written.
    Written,
    /// A create of an id that exists: nothing written.
    Exists,
    /// A delete of an id that did not exist.
    Absent,
}

/// Whether a write's commit must reach the disk before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sync {
    /// Synced before the answer (every write but a few).
    Now,
    /// Synced with the next synced commit; a crash of the machine may lose it.
    Later,
}

/// The answer to one write.
pub(super) type Answer = oneshot::Receiver<Result<Done, StoreError>>;

struct Request {
    op: Op,
    sync: Sync,
    answer: oneshot::Sender<Result<Done, StoreError>>,
}

/// The writing thread and the way to it.
#[derive(Debug)]
pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl Writer {
    /// Starts the thread writing through `conn` to the database at `path`.
    pub(super) fn start(conn: Arc<Mutex<Connection>>, path: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        let p = path.clone();
        let thread = std::thread::Builder::new()
            .name("bamboo-store".into())
            .spawn(move || run(&conn, &rx, &p))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            path,
        })
    }

    /// Writes `op`; answers once it is durable.
    pub(super) async fn write(&self, op: Op) -> Result<Done, StoreError> {
        let answered = self.send(op, Sync::Now)?;
        answered.await.unwrap_or_else(|_| Err(self.closed()))
    }

    /// Queues `op` behind every write sent before it, and returns where
    /// its answer comes (after its commit, synced as `sync` says).
    pub(super) fn send(&self, op: Op, sync: Sync) -> Result<Answer, StoreError> {
        let (answer, answered) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.send(Request { op, sync, answer }).is_ok());
        if sent != Some(true) {
            return Err(self.closed());
        }
        Ok(answered)
    }

    pub(super) fn closed(&self) -> StoreError {
        StoreError::from_io(
            &self.path,
            std::io::Error::other("the session store is closed"),
        )
    }

    /// Lets the queued writes finish, then stops the thread (blocking).
    pub(super) fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn run(conn: &Mutex<Connection>, rx: &mpsc::Receiver<Request>, path: &std::path::Path) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let c = conn.lock().unwrap_or_else(|p| p.into_inner());
        let ops: Vec<&Op> = batch.iter().map(|r| &r.op).collect();
        let unsynced = batch.iter().all(|r| r.sync == Sync::Later);
        match commit(&c, &ops, unsynced) {
            Ok(done) => {
                for (r, done) in batch.into_iter().zip(done) {
                    let _ = r.answer.send(Ok(done));
                }
            }
            Err(e) if batch.len() == 1 || is_commit_failure(&e) => {
                for r in batch {
                    let _ = r.answer.send(Err(db::err(path, clone_err(&e))));
                }
            }
            // One write failed on its own: each alone, so only it fails.
            Err(_) => {
                for r in batch {
                    let one = commit(&c, &[&r.op], r.sync == Sync::Later)
                        .map(|mut d| d.pop().unwrap_or(Done::Written))
                        .map_err(|e| db::err(path, e));
                    let _ = r.answer.send(one);
                }
            }
        }
    }
}

/// Whether `e` stops any write (a full disk, an I/O error), so retrying the
/// batch one write at a time would only fail again, more slowly.
fn is_commit_failure(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(
            C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::PermissionDenied | C::DatabaseBusy
        )
    )
}

/// `e` again, for a second caller (keeps the code SQLite gave).
fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => rusqlite::Error::SqliteFailure(*f, msg.clone()),
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Applies `ops` in one transaction and commits it (one WAL sync, none
/// when `unsynced`). The setting is made before every commit, so a synced
/// one never runs unsynced.
fn commit(c: &Connection, ops: &[&Op], unsynced: bool) -> rusqlite::Result<Vec<Done>> {
    c.execute_batch(if unsynced {
        "PRAGMA synchronous = NORMAL"
    } else {
        "PRAGMA synchronous = FULL"
    })?;
    c.execute_batch("BEGIN IMMEDIATE")?;
    let applied = ops.iter().map(|op| apply(c, op)).collect();
    let done = match applied {
        Ok(done) => done,
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    };
    if let Err(e) = c.execute_batch("COMMIT") {
        // Nothing of a refused commit counts.
        if !c.is_autocommit() {
            let _ = c.execute_batch("ROLLBACK");
        }
        return Err(e);
    }
    Ok(done)
}

fn apply(c: &Connection, op: &Op) -> rusqlite::Result<Done> {
    Ok(match op {
        Op::Create(row) => {
            if db::insert(c, row)? {
                Done::Written
            } else {
                Done::Exists
            }
        }
        Op::Put(row) => {
            db::put(c, row)?;
            Done::Written
        }
        Op::Delete(id) => {
            if db::delete(c, id)? {
                Done::Written
            } else {
                Done::Absent
            }
        }
    })
}
