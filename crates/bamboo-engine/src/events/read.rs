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

/// The last log line before `end` (which follows a newline), parsed, and how
/// many damaged lines after it were passed over (a write that a full disk
/// cut short, glued to what an older version wrote next). `None` when no
/// line of the file parses.
pub(crate) fn last_line(file: &File, mut end: u64) -> std::io::Result<(Option<Line>, usize)> {
    let mut damaged = 0;
    while end > 0 {
        let start = end_of_last_line(file, end - 1)?;
        let mut buf = vec![0; (end - 1 - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        if let Some(line) = line::parse(&buf) {
            return Ok((Some(line), damaged));
        }
        damaged += 1;
        end = start;
    }
    Ok((None, damaged))
}

/// Why a batch stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchEnd {
    /// It reached `limit`: the rest is in memory.
    Limit,
    /// Events `first..=last` are not in the file (a gap, or a damaged
    /// line); `next_offset` is where the events after them start.
    Hole { first: u64, last: u64 },
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
/// `max` events. Gap markers and damaged lines are passed over; the events
/// they stand for show as a jump in the numbering, which ends the batch
/// with [`BatchEnd::Hole`], so no loss is ever silent.
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
    let mut expect = next;
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
            Some(Line::Event(e)) if e.seq > expect && expect < limit => {
                batch.end = BatchEnd::Hole {
                    first: expect,
                    last: e.seq.min(limit) - 1,
                };
                return Ok(batch);
            }
            Some(Line::Event(e)) if e.seq >= limit => {
                batch.end = BatchEnd::Limit;
                return Ok(batch);
            }
            Some(Line::Event(e)) => {
                batch.next_offset += n as u64;
                if e.seq >= next {
                    expect = e.seq + 1;
                    batch.events.push(e);
                    if batch.events.len() >= max {
                        batch.end = BatchEnd::Full;
                        return Ok(batch);
                    }
                }
            }
            Some(Line::GapFrom(_) | Line::GapTo(_)) => batch.next_offset += n as u64,
            None => {
                if !body.is_empty() {
                    tracing::warn!(path = %path.display(), offset = batch.next_offset,
                        "skipping a damaged line of an event log");
                }
                batch.next_offset += n as u64;
            }
        }
    }
}
