//! A session's durable inbox (the reference's Maildir mailbox): at least once,
//! crash-safe, deduplicated by message id.
//!
//! Layout under `<data>/inbox/<session>/`: `tmp/` (being written), `new/`
//! (delivered, unclaimed), `cur/` (claimed, not yet acknowledged), `corrupt/`
//! (unreadable files, set aside). Deliver writes `tmp/` and renames into
//! `new/` (atomic: a reader sees the whole message or none); claim renames
//! `new/` → `cur/`; ack deletes from `cur/`; [`Inbox::open`] moves what a crash
//! left in `cur/` back to `new/`, so nothing claimed and unacknowledged is
//! lost. Files are 0600, directories 0700, each made when first needed (a
//! run that gets no message touches no directory). File names are
//! `<nanos>-<id>.json`: claim order is delivery order, and the id is in the
//! name so a duplicate is found without reading files.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::private::{create_private_dir_all, create_private_file};

/// What an inbox message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// A plain message (e.g. `send_message` to a running child).
    Message,
    /// A question that expects a [`InboxKind::Reply`].
    Ask,
    /// The answer to an `Ask`; `reply_to` names it.
    Reply,
}

/// One message in an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// Unique id; a second delivery with the same id is a duplicate.
    pub id: String,
    /// Kind.
    pub kind: InboxKind,
    /// The sending session.
    pub from: String,
    /// The text.
    pub body: String,
    /// For a reply: the id of the ask it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl InboxMessage {
    /// A new message with a fresh id.
    pub fn new(kind: InboxKind, from: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            id: format!("m-{}", uuid::Uuid::new_v4().simple()),
            kind,
            from: from.into(),
            body: body.into(),
            reply_to: None,
            created_at: Utc::now(),
        }
    }
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The message is in `new/`.
    New,
    /// A message with this id is already in the inbox: nothing written.
    Duplicate,
}

/// Why an inbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The file system refused.
    #[error("inbox I/O failed on {path}: {source}; check the data directory's permissions and free space")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An id that cannot name a file.
    #[error("inbox message id {0:?} is not valid: use letters, digits, '-' and '_' only")]
    InvalidId(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InboxError + '_ {
    move |source| InboxError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One session's inbox on disk.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    root: PathBuf,
}

impl Inbox {
    /// Opens the inbox at `root` and recovers what a crash left claimed but
    /// unacknowledged (`cur/` → `new/`).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, InboxError> {
        let inbox = Self::attach(root)?;
        inbox.recover()?;
        Ok(inbox)
    }

    /// Opens the inbox at `root` without recovery: for a process that
    /// already recovered it at start, where `cur/` holds claims in flight
    /// that must stay claimed. Touches no file: directories are made when a
    /// message first needs them.
    pub fn attach(root: impl Into<PathBuf>) -> Result<Self, InboxError> {
        Ok(Self { root: root.into() })
    }

    /// The subdirectory `name`, made (with the inbox's own directory) if it
    /// is missing. A directory made here is synced into its parent, so a
    /// message delivered into it survives a crash.
    fn ensure(&self, name: &str) -> Result<PathBuf, InboxError> {
        let d = self.dir(name);
        if d.is_dir() {
            return Ok(d);
        }
        create_private_dir_all(&d).map_err(io_err(&d))?;
        sync_dir(&self.root)?;
        if let Some(parent) = self.root.parent() {
            sync_dir(parent)?;
        }
        Ok(d)
    }

    /// Claims the unclaimed message `id`, if it is still there.
    pub fn take(&self, id: &str) -> Result<Option<InboxMessage>, InboxError> {
        check_id(id)?;
        let Some(name) = self.find("new", id)? else {
            return Ok(None);
        };
        let (from, to) = (self.dir("new").join(&name), self.ensure("cur")?.join(&name));
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&from)(e)),
        }
        let bytes = fs::read(&to).map_err(io_err(&to))?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Claims every unclaimed message, oldest first.
    pub fn claim_all(&self) -> Result<Vec<InboxMessage>, InboxError> {
        let mut out = Vec::new();
        while let Some(m) = self.claim()? {
            out.push(m);
        }
        Ok(out)
    }

    /// How many messages wait unclaimed.
    pub fn count(&self) -> Result<usize, InboxError> {
        Ok(self.names("new")?.len())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Moves every claimed, unacknowledged message back to `new/`. Returns how many.
    pub fn recover(&self) -> Result<usize, InboxError> {
        let names = self.names("cur")?;
        for name in &names {
            let (from, to) = (self.dir("cur").join(name), self.ensure("new")?.join(name));
            fs::rename(&from, &to).map_err(io_err(&from))?;
        }
        Ok(names.len())
    }

    /// Delivers `msg` atomically, unless a message with its id is already
    /// here (new or claimed).
    pub fn deliver(&self, msg: &InboxMessage) -> Result<Delivered, InboxError> {
        check_id(&msg.id)?;
        if self.find("new", &msg.id)?.is_some() || self.find("cur", &msg.id)?.is_some() {
            return Ok(Delivered::Duplicate);
        }
        let nanos = msg.created_at.timestamp_nanos_opt().unwrap_or_default();
        let name = format!("{nanos:020}-{}.json", msg.id);
        let new = self.ensure("new")?;
        let tmp = self.ensure("tmp")?.join(&name);
        let mut file = create_private_file(&tmp).map_err(io_err(&tmp))?;
        let bytes = serde_json::to_vec(msg).map_err(|e| InboxError::Io {
            path: tmp.display().to_string(),
            source: io::Error::other(e),
        })?;
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, new.join(&name)).map_err(io_err(&tmp))?;
        sync_dir(&new)?;
        Ok(Delivered::New)
    }

    /// Claims the oldest unclaimed message (moves it to `cur/`). Unreadable
    /// files are set aside in `corrupt/` and skipped.
    pub fn claim(&self) -> Result<Option<InboxMessage>, InboxError> {
        for name in self.names("new")? {
            let (from, to) = (self.dir("new").join(&name), self.ensure("cur")?.join(&name));
            match fs::rename(&from, &to) {
                Ok(()) => {}
                // Claimed by another reader in between.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&from)(e)),
            }
            let parsed = fs::read(&to)
                .ok()
                .and_then(|b| serde_json::from_slice::<InboxMessage>(&b).ok());
            match parsed {
                Some(msg) => return Ok(Some(msg)),
                None => {
                    let aside = self.ensure("corrupt")?.join(&name);
                    tracing::warn!(file = %to.display(), "unreadable inbox message set aside");
                    fs::rename(&to, &aside).map_err(io_err(&to))?;
                }
            }
        }
        Ok(None)
    }

    /// Acknowledges a claimed message: it is gone for good. Acking an id
    /// that is not claimed is not an error.
    pub fn ack(&self, id: &str) -> Result<(), InboxError> {
        check_id(id)?;
        if let Some(name) = self.find("cur", id)? {
            let path = self.dir("cur").join(name);
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(io_err(&path)(e));
                }
            }
        }
        Ok(())
    }

    /// Unclaimed messages, oldest first, without claiming them.
    pub fn peek(&self) -> Result<Vec<InboxMessage>, InboxError> {
        let mut out = Vec::new();
        for name in self.names("new")? {
            let path = self.dir("new").join(name);
            if let Some(m) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// File names in `dir`, sorted (delivery order); dot files skipped. A
    /// directory not made yet holds nothing.
    fn names(&self, dir: &str) -> Result<Vec<String>, InboxError> {
        let d = self.dir(dir);
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&d)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && n.ends_with(".json"))
            .collect();
        names.sort();
        Ok(names)
    }

    fn find(&self, dir: &str, id: &str) -> Result<Option<String>, InboxError> {
        let suffix = format!("-{id}.json");
        Ok(self.names(dir)?.into_iter().find(|n| n.ends_with(&suffix)))
    }
}

fn check_id(id: &str) -> Result<(), InboxError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(InboxError::InvalidId(id.to_owned()))
    }
}

/// Makes a rename into `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), InboxError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests;
