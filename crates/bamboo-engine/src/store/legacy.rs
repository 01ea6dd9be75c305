//! Data directories of earlier versions, which kept one file per session in
//! `<data>/sessions/`:
//! - `<id>.jsonl`, a log of whole JSON documents whose last complete line is
//!   the session (a torn last line means the version before it, see `log`);
//! - `<id>.json`, one document (the layout before that);
//! - `.spare-<uuid>`, an empty file made ahead of need, which a crash may
//!   have left holding the only durable name of a just-created session;
//! - `<data>/children/`, an on-disk child index of older versions still.
//!
//! Opening the store moves every session found into the database in one
//! transaction, then removes the files (what the database holds wins, so a
//! crash in between only repeats the move). A file that does not parse is
//! left where it is, with a warning, for an operator. Reads that take no
//! lock ([`super::FileStore::peek`]) read these files while a directory has
//! no database yet.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use bamboo_domain::Session;

use super::log::{self, LogError};
use super::{check_id, StoreError};

const LOG: &str = ".jsonl";
const DOCUMENT: &str = ".json";
const SPARE: &str = ".spare-";

/// What an earlier version left in a `sessions/` directory.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// The newest version of each session.
    pub(super) sessions: Vec<Session>,
    /// The files to remove once those are in the database.
    pub(super) done: Vec<PathBuf>,
}

impl Found {
    pub(super) fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.done.is_empty()
    }
}

/// Reads what an earlier version left in `dir` (blocking).
pub(super) fn scan(dir: &Path) -> io::Result<Found> {
    let mut found = Found::default();
    let mut by_id: HashMap<String, Session> = HashMap::new();
    let mut spares = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(SPARE) {
            spares.push(path);
        } else if name.starts_with('.') {
            // A temp file of a rewrite a crash cut short: never the session.
            if name.ends_with(".tmp") {
                found.done.push(path);
            }
        } else if let Some(id) = name.strip_suffix(LOG) {
            match read_log(&path) {
                Ok(Some(s)) if s.id == id => {
                    by_id.insert(s.id.clone(), s);
                    found.done.push(path);
                }
                Ok(Some(_)) => warn_left(&path, "its id differs from its file name"),
                // A create cut short by a crash: the session never existed.
                Ok(None) => found.done.push(path),
                Err(why) => warn_left(&path, &why),
            }
        } else if let Some(id) = name.strip_suffix(DOCUMENT) {
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Session>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(s) if s.id == id => {
                    by_id.entry(s.id.clone()).or_insert(s);
                    found.done.push(path);
                }
                Ok(_) => warn_left(&path, "its id differs from its file name"),
                Err(why) => warn_left(&path, &why),
            }
        }
    }
    // A spare holds a session's first version; its own file, when there is
    // one, is newer. A spare still linked to a session's name is that file.
    for spare in spares {
        match read_log(&spare) {
            Ok(Some(s)) if check_id(&s.id).is_ok() => {
                if !by_id.contains_key(&s.id) && !dir.join(format!("{}{LOG}", s.id)).exists() {
                    tracing::info!(session = %s.id,
                        "restored a session created just before a crash from its spare file");
                    by_id.insert(s.id.clone(), s);
                }
                found.done.push(spare);
            }
            Ok(Some(_)) => warn_left(&spare, "it names no valid session id"),
            Ok(None) => found.done.push(spare),
            Err(why) => warn_left(&spare, &why),
        }
    }
    found.sessions = by_id.into_values().collect();
    Ok(found)
}

fn warn_left(path: &Path, why: &str) {
    tracing::warn!(file = %path.display(), why,
        "a session file of an earlier version is damaged and was not moved into the store; left for an operator");
}

/// The newest version in the log at `path`; `None` when it holds no
/// complete line.
fn read_log(path: &Path) -> Result<Option<Session>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    match log::newest::<Session>(&bytes) {
        Ok(n) => Ok(Some(n.doc)),
        Err(LogError::Empty) => Ok(None),
        Err(LogError::BadLine(why)) => Err(why),
    }
}

/// Removes the files moved into the database, and the on-disk child index
/// of older versions (blocking).
pub(super) fn remove(data: &Path, sessions: &Path, done: &[PathBuf]) -> io::Result<()> {
    for path in done {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_dir_all(data.join("children")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::File::open(sessions)?.sync_all()
}

/// Session `id` in a directory not moved into a database yet.
pub(super) fn peek(sessions: &Path, id: &str) -> Result<Option<Session>, StoreError> {
    let path = sessions.join(format!("{id}{LOG}"));
    if !path.exists() {
        return Ok(None);
    }
    read_log(&path).map_err(|reason| StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
    })
}

/// The session ids in a directory not moved into a database yet.
pub(super) fn peek_ids(sessions: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(sessions) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::from_io(sessions, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::from_io(sessions, e))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(LOG)) {
            if check_id(id).is_ok() {
                ids.push(id.to_owned());
            }
        }
    }
    ids.sort();
    Ok(ids)
}
