//! Reading a session's event log with no engine: `sessions show` (and its
//! `--follow`) while a run holds the data directory. Nothing is locked or
//! written; a line still being written is left for the next read.

use std::path::{Path, PathBuf};

use super::read::{read_batch, BatchEnd};
use super::LoggedEvent;

/// A reader of one log file, `<data>/events/<session>.ndjson`, that
/// remembers how far it read: each [`LogTail::read_new`] returns the events
/// logged since the previous one.
///
/// It reads only what the engine has written to the file; a running engine
/// writes its buffer within a tenth of a second of an event, so a live
/// run's events arrive about that late.
#[derive(Debug, Clone)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    next: u64,
}

impl LogTail {
    /// A reader of session `session`'s log in data directory `data_dir`,
    /// at its first event.
    pub fn new(data_dir: impl AsRef<Path>, session: &str) -> Self {
        Self {
            path: data_dir
                .as_ref()
                .join("events")
                .join(format!("{session}.ndjson")),
            offset: 0,
            next: 1,
        }
    }

    /// The events written since the last call, in order. Lost events (a
    /// gap in the file) show as a jump in the sequence numbers. A log that
    /// does not exist yet has no events. Blocking: reads the file.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn read_new(&mut self) -> std::io::Result<Vec<LoggedEvent>> {
        let mut out = Vec::new();
        loop {
            let batch = match read_batch(&self.path, self.offset, self.next, u64::MAX, usize::MAX) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            self.offset = batch.next_offset;
            if let Some(last) = batch.events.last() {
                self.next = last.seq + 1;
            }
            out.extend(batch.events);
            match batch.end {
                BatchEnd::Hole { last, .. } => self.next = last + 1,
                BatchEnd::Eof | BatchEnd::Full | BatchEnd::Limit => return Ok(out),
            }
        }
    }
}
