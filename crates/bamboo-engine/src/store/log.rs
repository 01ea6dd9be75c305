//! The on-disk shape of one session: `<id>.jsonl`, a short log of whole
//! session documents, one compact JSON document per line; the last complete
//! line is the session.
//!
//! Why a log: an update is then one append and one `fdatasync` (about 0.2 ms
//! here), where a rewrite through a temp file costs a file sync, a rename and
//! a directory sync (about 0.7 ms). A child run updates its session several
//! times, so this is most of the engine's per-child cost.
//!
//! Crash safety (S3): every append is synced before the store answers, and
//! appends to one session are serialised, so only the last line can be torn
//! (cut short, or holding blocks that never reached the disk). A torn last line
//! is ignored on read, which yields the previous, durable version, and cut
//! away before the next append. A bad line anywhere else is corruption and is
//! reported, never skipped silently.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde::de::DeserializeOwned;

use super::private::{open_private, private_file_options};

/// A log longer than this, and than [`COMPACT_RATIO`] times its newest line,
/// is rewritten as one line (temp file + rename) instead of appended to.
pub(super) const COMPACT_FLOOR: u64 = 64 * 1024;
/// See [`COMPACT_FLOOR`]: bounds the log to a few copies of the document.
pub(super) const COMPACT_RATIO: u64 = 4;

/// The newest intact document of a log, and where the intact part ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Newest<T> {
    /// The document.
    pub(super) doc: T,
    /// Length of the log up to and including the document's newline; anything
    /// after it is a torn tail to cut before appending.
    pub(super) intact_len: u64,
    /// Length of the document's line (a measure of its size in memory).
    pub(super) doc_len: u64,
}

/// Why a log has no usable document.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LogError {
    /// Not even one complete line.
    Empty,
    /// A line other than the last does not parse: damage, not a torn append.
    BadLine(String),
}

/// Finds the newest document. Only the last append can be torn: an
/// unterminated tail is cut off, and a complete last line that does not parse
/// (its blocks never reached the disk) yields the line before it. A log with
/// no complete line at all is a create that never finished.
pub(super) fn newest<T: DeserializeOwned>(log: &[u8]) -> Result<Newest<T>, LogError> {
    let complete = line_start(log, log.len());
    if complete == 0 {
        return Err(LogError::Empty);
    }
    let torn_tail = complete < log.len();
    let start = line_start(log, complete - 1);
    match parse(log, start, complete) {
        Ok(found) => Ok(found),
        Err(e) if torn_tail || start == 0 => Err(e),
        Err(_) => parse(log, line_start(log, start - 1), start),
    }
}

/// Where the line holding byte `end - 1` starts (0 for the first line).
fn line_start(log: &[u8], end: usize) -> usize {
    log[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// The line `log[start..end]` (newline included) as the newest document.
fn parse<T: DeserializeOwned>(log: &[u8], start: usize, end: usize) -> Result<Newest<T>, LogError> {
    let doc = serde_json::from_slice(&log[start..end - 1])
        .map_err(|e| LogError::BadLine(e.to_string()))?;
    Ok(Newest {
        doc,
        intact_len: end as u64,
        doc_len: (end - start) as u64,
    })
}

/// Whether appending `line_len` bytes to an intact log of `intact_len` bytes
/// should instead rewrite the log as that one line.
pub(super) fn should_compact(intact_len: u64, line_len: u64) -> bool {
    let after = intact_len + line_len;
    after > COMPACT_FLOOR && after > COMPACT_RATIO * line_len
}

/// Writes a new log holding `line` at `path` (replacing a file left by a
/// create that a crash cut short, but never one with a document), and syncs
/// it and its directory `dir` (so the new name survives too). Until both
/// syncs the file may be found empty or cut short, which [`newest`] reports
/// as [`LogError::Empty`]: a session that was never created.
pub(super) fn create(path: &Path, dir: &Path, line: &[u8]) -> std::io::Result<Created> {
    let mut options = private_file_options();
    options.write(true).create_new(true);
    let mut f = match open_private(&options, path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(path)?;
            if !matches!(
                newest::<serde::de::IgnoredAny>(&bytes),
                Err(LogError::Empty)
            ) {
                return Ok(Created::AlreadyThere);
            }
            let mut options = private_file_options();
            options.write(true).truncate(true);
            open_private(&options, path)?
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = f.write_all(line) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    // The data and the new name are synced at once: two syncs in a row cost
    // twice the disk's sync latency, side by side about once. Both must
    // succeed before the create counts; a crash between them leaves a file
    // that is empty or cut short (never created, see above) or none.
    let (data, name) = std::thread::scope(|s| {
        let name = s.spawn(|| std::fs::File::open(dir)?.sync_all());
        let data = f.sync_data();
        let name = name
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the directory sync panicked")));
        (data, name)
    });
    // A create that fails leaves no session behind, whichever sync failed.
    if data.is_err() || name.is_err() {
        let _ = std::fs::remove_file(path);
    }
    data?;
    name?;
    Ok(Created::New)
}

/// What [`create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Created {
    /// Wrote the new log.
    New,
    /// Left alone a log that already holds a document (or damage).
    AlreadyThere,
}

/// Appends `line` (ending in a newline) after the intact part of the log at
/// `path`, cutting any torn tail first, and syncs the data before returning.
pub(super) fn append(path: &Path, intact_len: u64, line: &[u8]) -> std::io::Result<()> {
    let mut options = private_file_options();
    options.write(true);
    let mut f = open_private(&options, path)?;
    if f.metadata()?.len() != intact_len {
        f.set_len(intact_len)?;
    }
    f.seek(SeekFrom::Start(intact_len))?;
    // fdatasync also persists the new length, so the appended line survives.
    let written = f.write_all(line).and_then(|()| f.sync_data());
    if written.is_err() {
        // A refused append (a full disk) leaves no part of its line: the
        // session stays the previous version, on disk as in memory. Cutting
        // needs no free space.
        let _ = f.set_len(intact_len);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(log: &[u8]) -> (String, u64) {
        let n = newest::<serde_json::Value>(log).unwrap();
        (n.doc.to_string(), n.intact_len)
    }

    #[test]
    fn the_last_complete_line_wins() {
        assert_eq!(doc(b"{\"v\":1}\n"), ("{\"v\":1}".into(), 8));
        assert_eq!(doc(b"{\"v\":1}\n{\"v\":2}\n"), ("{\"v\":2}".into(), 16));
    }

    #[test]
    fn a_torn_last_append_falls_back_to_the_previous_version() {
        // Cut short: no newline.
        assert_eq!(doc(b"{\"v\":1}\n{\"v\":"), ("{\"v\":1}".into(), 8));
        // Terminated but its blocks never reached the disk (zeros).
        assert_eq!(doc(b"{\"v\":1}\n\0\0\0\0\n"), ("{\"v\":1}".into(), 8));
    }

    #[test]
    fn damage_before_the_last_line_is_reported() {
        assert!(matches!(
            newest::<serde_json::Value>(b"{\"v\":1}\n{bad\n{\"v\"\n"),
            Err(LogError::BadLine(_))
        ));
        assert!(matches!(
            newest::<serde_json::Value>(b"{bad\n{\"v\":"),
            Err(LogError::BadLine(_))
        ));
    }

    #[test]
    fn an_empty_or_unterminated_only_log_has_no_document() {
        assert_eq!(newest::<serde_json::Value>(b""), Err(LogError::Empty));
        assert_eq!(
            newest::<serde_json::Value>(b"{\"v\":1}"),
            Err(LogError::Empty)
        );
    }

    #[test]
    fn compaction_keeps_the_log_to_a_few_copies() {
        assert!(!should_compact(3_000, 1_000));
        assert!(!should_compact(60_000, 1_000));
        assert!(should_compact(70_000, 1_000));
        // A big document is appended a few times before the rewrite.
        assert!(!should_compact(200_000, 100_000));
        assert!(should_compact(400_000, 100_000));
    }

    #[test]
    fn append_cuts_a_torn_tail_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        std::fs::write(&path, b"{\"v\":1}\n{\"v\":").unwrap();
        let intact = newest::<serde_json::Value>(&std::fs::read(&path).unwrap())
            .unwrap()
            .intact_len;
        append(&path, intact, b"{\"v\":2}\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"v\":1}\n{\"v\":2}\n");
    }
}
