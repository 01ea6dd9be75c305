//! Reading a log file back: the tail on reopen, and batches for readers
//! that fell behind the ring. Blocking I/O: callers run it off the async
//! threads.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::line::{self, Line};
use super::LoggedEvent;

const CHUNK: u64 = 64 * 1024;

/// The offset just after the last newline of the first `len` bytes (0 when
/// there is none): what lies beyond is a torn line.
pub(crate) fn end_of_last_line(file: &File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0; (end - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The last complete line before `end` (which follows a newline), parsed.
/// `None` for an empty file; an unreadable line is an error, so a damaged
/// log is never numbered from 1 again.
pub(crate) fn last_line(file: &File, end: u64) -> std::io::Result<Option<Line>> {
    if end == 0 {
        return Ok(None);
    }
    let start = end_of_last_line(file, end - 1)?;
    let mut buf = vec![0; (end - 1 - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    line::parse(&buf).map(Some).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the last line of the event log is not a log line",
        )
    })
}

/// Why a batch stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchEnd {
    /// It reached `limit`: the rest is in memory.
    Limit,
    /// Events from this one on are not in the file.
    Gap(u64),
    /// The file ended first.
    Eof,
    /// The batch is full; read on from `next_offset`.
    Full,
}

/// Events read from a file.
#[derive(Debug)]
pub(crate) struct Batch {
    pub events: Vec<LoggedEvent>,
    pub next_offset: u64,
    pub end: BatchEnd,
}

/// Reads events `next..limit` from `offset`, skipping older ones, at most
/// `max` events.
pub(crate) fn read_batch(
    path: &Path,
    offset: u64,
    next: u64,
    limit: u64,
    max: usize,
) -> std::io::Result<Batch> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    // Below malloc's mmap threshold, so each batch reuses heap memory
    // rather than mapping (and faulting in) fresh pages.
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut batch = Batch {
        events: Vec::new(),
        next_offset: offset,
        end: BatchEnd::Eof,
    };
    let mut text = Vec::new();
    let mut ids = super::fast::Ids::default();
    loop {
        text.clear();
        let n = reader.read_until(b'\n', &mut text)?;
        if n == 0 || text.last() != Some(&b'\n') {
            return Ok(batch);
        }
        let body = &text[..n - 1];
        // Lines before `next` are skipped unparsed: a reader that seeks from
        // the sparse index passes up to 1,024 of them.
        if line::seq_of(body).is_some_and(|seq| seq < next) {
            batch.next_offset += n as u64;
            continue;
        }
        match line::parse_sharing(body, &mut ids) {
            Some(Line::Event(e)) if e.seq >= limit => {
                batch.end = BatchEnd::Limit;
                return Ok(batch);
            }
            Some(Line::Event(e)) => {
                batch.next_offset += n as u64;
                if e.seq >= next {
                    batch.events.push(e);
                    if batch.events.len() >= max {
                        batch.end = BatchEnd::Full;
                        return Ok(batch);
                    }
                }
            }
            Some(Line::GapFrom(g)) => {
                batch.end = BatchEnd::Gap(g);
                return Ok(batch);
            }
            Some(Line::GapTo(_)) | None => batch.next_offset += n as u64,
        }
    }
}
