//! One session's event log: sequence numbers, the ring of newest events for
//! live readers, and the append-only file behind it.
//!
//! Invariant: every event older than the ring is in the file (written, if
//! not yet synced) or inside the explicit gap (`gap_from`). Eviction from the
//! ring writes the buffer first when it must, so a reader that falls behind
//! the ring always finds its next event in the file or learns it is lost.
//!
//! A gap never takes a run's start, end or approval request: those leave the
//! ring for a side list (`kept`) rather than for nowhere, and a reader in the
//! gap gets them between the `events_truncated` events that stand for the
//! rest. Readers that count runs (the front door, a handle's `wait`) would
//! otherwise wait for an end they can never see. The list grows by a few
//! events per run, and only while the log has a gap.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bamboo_domain::AgentEvent;

use super::line;
use super::{LogLimits, LoggedEvent};

/// Bytes buffered before a write to the file.
const WRITE_BATCH: usize = 256 * 1024;
/// One sparse index entry per this many events, to seek near a position.
const INDEX_EVERY: u64 = 1024;
/// Newest events a log keeps in memory once no run writes to it: readers a
/// little behind the end of a run (the usual case: the run's task ends
/// while they are still being woken) finish from memory, not the file.
const IDLE_TAIL: usize = 128;

/// What a reader at position `next` should do now.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Events from memory (the ring, or kept from a gap), added to the
    /// reader's queue.
    Memory,
    /// Read the file from `offset` for events `next..limit`.
    Disk { offset: u64, limit: u64 },
    /// Events `first..=last` are lost (the cap, or a failed write).
    Gap { first: u64, last: u64 },
    /// Nothing yet: the waker is registered.
    Wait,
    /// The log is closed and fully read, or deleted.
    End,
}

/// How long an ended run's events may wait for their sync, so that runs
/// ending close together share it (see [`SessionLog::sync_soon`]).
pub(crate) const SYNC_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a logged event may wait in the buffer before it is written to
/// the file: a reader with no engine (`sessions show --follow` while a run
/// holds the directory) sees the file at most this far behind.
pub(crate) const WRITE_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// A session's log.
#[derive(Debug)]
pub(crate) struct SessionLog {
    id: String,
    path: PathBuf,
    limits: LogLimits,
    state: Mutex<State>,
    /// One sync at a time; those that queue behind it usually find nothing
    /// left to sync (runs ending together share one `fdatasync`).
    syncing: tokio::sync::Mutex<()>,
    /// A [`SessionLog::sync_soon`] is waiting out its window.
    sync_due: std::sync::atomic::AtomicBool,
    /// A write of the buffer is scheduled (see [`SessionLog::write_soon`]).
    write_due: std::sync::atomic::AtomicBool,
    /// `fdatasync`s done, for the tests of group commit.
    #[cfg(test)]
    pub(super) syncs: std::sync::atomic::AtomicU64,
    /// Runs publishing to this log now; at zero its ring is cut to a short tail.
    writers: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct State {
    /// Sequence number of the next event.
    next_seq: u64,
    /// The newest events: `next_seq - ring.len() .. next_seq`. Readers get
    /// clones (the event itself is shared).
    ring: VecDeque<LoggedEvent>,
    /// Events older than the ring, inside the gap, that say a run started
    /// or ended or asks for approval (see [`kept_in_a_gap`]), in order.
    kept: VecDeque<LoggedEvent>,
    /// The last event time converted, and its microseconds: the events of
    /// one burst share one reading of the clock, so one conversion.
    last_time: (i64, chrono::DateTime<chrono::Utc>),
    file: Option<Arc<File>>,
    /// Lines not yet written to the file.
    buf: Vec<u8>,
    /// Bytes in the file.
    file_len: u64,
    /// Every event up to this one is in the file (written, maybe not synced).
    written_through: u64,
    /// Events from here on are not in the file.
    gap_from: Option<u64>,
    /// The last `gap_to` written.
    gap_to_written: u64,
    /// `(seq, offset)` every `INDEX_EVERY` events written this engine's life.
    index: Vec<(u64, u64)>,
    waiters: Vec<Waker>,
    /// No more events; readers end when they have read everything.
    closed: bool,
    /// Removed; readers end at once.
    deleted: bool,
    /// Written since the last sync.
    dirty: bool,
    /// A failed write left part of a line that could not be cut away: the
    /// next write starts on a fresh line.
    torn: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionLog {
    /// Opens `path`, continuing its numbering when it exists. A torn last
    /// line (a crash mid-write) is cut away. A file that cannot be read is
    /// left alone and this log keeps new events in memory only, saying so
    /// to its readers as a gap.
    pub fn open(id: &str, path: PathBuf, limits: LogLimits) -> Self {
        let (next_seq, gap_from, file_len) = match recover(&path) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the event log; new events of this session are kept in memory only");
                (1, Some(1), 0)
            }
        };
        Self {
            id: id.to_owned(),
            path,
            limits,
            state: Mutex::new(State {
                next_seq,
                ring: VecDeque::new(),
                kept: VecDeque::new(),
                file: None,
                buf: Vec::new(),
                file_len,
                written_through: next_seq - 1,
                gap_from,
                gap_to_written: 0,
                index: Vec::new(),
                waiters: Vec::new(),
                closed: false,
                deleted: false,
                dirty: false,
                torn: false,
                last_time: (i64::MIN, chrono::DateTime::default()),
            }),
            syncing: tokio::sync::Mutex::new(()),
            sync_due: std::sync::atomic::AtomicBool::new(false),
            write_due: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            syncs: std::sync::atomic::AtomicU64::new(0),
            writers: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The session this log belongs to.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        lock(&self.state).next_seq
    }

    /// Appends one event; `json` is its serialization. Never waits on a
    /// reader; writes to the file only when a batch is full.
    pub fn append(&self, micros: i64, event: &Arc<AgentEvent>, json: &[u8]) {
        let (waiters, _evicted) = {
            let mut st = lock(&self.state);
            if st.deleted {
                return;
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            if st.gap_from.is_none() {
                self.buffer(&mut st, seq, micros, json);
            }
            if st.last_time.0 != micros {
                st.last_time = (micros, line::time_of(micros));
            }
            let time = st.last_time.1;
            st.ring.push_back(LoggedEvent {
                seq,
                time,
                event: event.clone(),
            });
            let evicted = if st.ring.len() > self.limits.ring_events {
                self.evict_oldest(&mut st)
            } else {
                None
            };
            // Usually one reader waits: popping it keeps the vector's
            // memory for the next wait; more than one are taken all at once.
            let first = st.waiters.pop();
            let rest = if st.waiters.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut st.waiters)
            };
            ((first, rest), evicted)
        };
        // Outside the lock: a woken reader goes straight for it, and the
        // evicted event is freed after it (`_evicted`, dropped last).
        let (first, rest) = waiters;
        for w in first.into_iter().chain(rest) {
            w.wake();
        }
    }

    fn buffer(&self, st: &mut State, seq: u64, micros: i64, json: &[u8]) {
        let line_len = json.len() as u64 + 48;
        if st.file_len + st.buf.len() as u64 + line_len > self.limits.cap_bytes {
            tracing::warn!(session = %self.id, cap = self.limits.cap_bytes, "event log reached its size cap; later events are not logged");
            st.gap_from = Some(seq);
            line::write_gap_from(&mut st.buf, seq);
            self.write_out(st);
            return;
        }
        if (seq - 1).is_multiple_of(INDEX_EVERY) {
            let at = st.file_len + st.buf.len() as u64;
            st.index.push((seq, at));
        }
        if line_len > WRITE_BATCH as u64 {
            // A large event (a long final answer) goes straight to the file
            // behind what is buffered, never copied into the buffer.
            self.write_out(st);
            if st.gap_from.is_none() {
                let mut head = Vec::with_capacity(64);
                line::write_event_head(&mut head, seq, micros);
                self.write_parts(st, &[&head, json, line::EVENT_END]);
            }
            return;
        }
        line::write_event(&mut st.buf, seq, micros, json);
        if st.buf.len() >= WRITE_BATCH {
            self.write_out(st);
        }
    }

    fn evict_oldest(&self, st: &mut State) -> Option<LoggedEvent> {
        // The evicted event must be readable from the file (or inside the
        // gap). It almost always is already: the ring holds several write
        // batches, so this writes only when the buffer is that far behind.
        let oldest = st.ring.front().map_or(0, |e| e.seq);
        let in_gap = |st: &State| st.gap_from.is_some_and(|g| oldest >= g);
        if oldest > st.written_through && !in_gap(st) {
            self.write_out(st);
        }
        let evicted = st.ring.pop_front()?;
        // Checked after the write: a failed one starts the gap here.
        if in_gap(st) && kept_in_a_gap(&evicted.event) {
            st.kept.push_back(evicted.clone());
        }
        Some(evicted)
    }

    /// Writes the buffer to the file. A failed write turns the rest of the
    /// log into a gap, reported to readers; it never fails the run.
    fn write_out(&self, st: &mut State) {
        if st.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut st.buf);
        self.write_parts(st, &[&buf]);
        st.buf = buf;
        st.buf.clear();
        if st.buf.capacity() > 2 * WRITE_BATCH {
            // Grown for one large event: not kept for the log's lifetime.
            st.buf = Vec::with_capacity(WRITE_BATCH);
        }
    }

    /// Writes `parts` (whole lines, everything up to the newest event) to
    /// the file, in order, as [`SessionLog::write_out`] does the buffer.
    fn write_parts(&self, st: &mut State, parts: &[&[u8]]) {
        let torn: &[u8] = if std::mem::take(&mut st.torn) {
            b"\n"
        } else {
            b""
        };
        let write = |mut f: &File| -> std::io::Result<()> {
            f.write_all(torn)?;
            parts.iter().try_for_each(|p| f.write_all(p))
        };
        let result = match &st.file {
            Some(f) => write(f),
            None => open_for_append(&self.path).and_then(|f| {
                let f = Arc::new(f);
                st.file = Some(f.clone());
                write(&f)
            }),
        };
        let len = (torn.len() + parts.iter().map(|p| p.len()).sum::<usize>()) as u64;
        match result {
            Ok(()) => {
                st.file_len += len;
                st.written_through = st.next_seq - 1;
                st.dirty = true;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot write the event log; later events of this session are kept in memory only");
                // A full disk can take part of the batch: cut it back to the
                // last whole line (no free space needed), so the gap marker
                // written later starts on a line of its own.
                let cut = st.file.as_ref().map(|f| f.set_len(st.file_len));
                st.torn = matches!(cut, Some(Err(_)));
                // Everything buffered is lost to the file; the ring still has
                // the newest events, and readers are told about the rest.
                let first_unwritten = st.ring.front().map_or(st.next_seq, |e| e.seq);
                let from = st.gap_from.unwrap_or(first_unwritten).min(first_unwritten);
                st.gap_from = Some(from);
            }
        }
    }

    /// What a reader at `next` (and stopping before `until`, if given)
    /// should do; registers `waker` when it must wait. For [`Plan::Memory`],
    /// up to `max` events are appended to `out`.
    pub fn plan(
        &self,
        next: u64,
        until: Option<u64>,
        max: usize,
        waker: &Waker,
        out: &mut VecDeque<LoggedEvent>,
    ) -> Plan {
        let mut st = lock(&self.state);
        if st.deleted {
            return Plan::End;
        }
        let end = until.map_or(st.next_seq, |u| u.min(st.next_seq));
        if next >= end {
            if st.closed || until.is_some_and(|u| next >= u) {
                return Plan::End;
            }
            if !st.waiters.iter().any(|w| w.will_wake(waker)) {
                st.waiters.push(waker.clone());
            }
            return Plan::Wait;
        }
        let ring_start = st.next_seq - st.ring.len() as u64;
        if next >= ring_start {
            let from = (next - ring_start) as usize;
            let n = ((end - next) as usize).min(max);
            out.extend(st.ring.range(from..from + n).cloned());
            return Plan::Memory;
        }
        // The first event kept from the gap at or after `next`: no stretch
        // reported lost and no file read goes past it.
        let first_kept = st.kept.partition_point(|e| e.seq < next);
        let kept_at = st.kept.get(first_kept).map(|e| e.seq);
        if st.gap_from.is_some_and(|g| next >= g) {
            return match kept_at {
                Some(seq) if seq == next => {
                    let run = st
                        .kept
                        .range(first_kept..)
                        .zip(next..end)
                        .take(max)
                        .take_while(|(e, seq)| e.seq == *seq)
                        .map(|(e, _)| e.clone());
                    out.extend(run);
                    Plan::Memory
                }
                Some(seq) => Plan::Gap {
                    first: next,
                    last: seq - 1,
                },
                None => Plan::Gap {
                    first: next,
                    last: ring_start - 1,
                },
            };
        }
        let offset = st
            .index
            .iter()
            .rev()
            .find(|(seq, _)| *seq <= next)
            .map_or(0, |(_, off)| *off);
        Plan::Disk {
            offset,
            limit: kept_at.map_or(ring_start, |seq| seq.min(ring_start)),
        }
    }

    /// The write buffer's capacity, for the tests of its memory.
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        lock(&self.state).buf.capacity()
    }

    /// Writes the buffered lines to the file now, without syncing: a pool
    /// run does this before it records how far it read, so a restarted
    /// engine that continues from there finds no gap in the file.
    pub fn write_pending(&self) {
        let mut st = lock(&self.state);
        self.write_out(&mut st);
    }

    /// Writes the buffer and syncs the file (end of a run; shutdown). The
    /// sync runs off the async threads and outside the log's lock.
    pub async fn sync(self: &Arc<Self>) {
        let _one_at_a_time = self.syncing.lock().await;
        let file = {
            let mut st = lock(&self.state);
            if let Some(g) = st.gap_from {
                let last = st.next_seq - 1;
                if last >= g && st.gap_to_written != last && st.file.is_some() {
                    line::write_gap_to(&mut st.buf, last);
                    st.gap_to_written = last;
                }
            }
            self.write_out(&mut st);
            if !std::mem::take(&mut st.dirty) {
                return;
            }
            st.file.clone()
        };
        let Some(file) = file else { return };
        let path = self.path.clone();
        let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
        #[cfg(test)]
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(Err(e)) = synced {
            tracing::error!(path = %path.display(), error = %e, "cannot sync the event log");
        }
    }

    /// Syncs the log [`SYNC_WINDOW`] from now, in the background, with
    /// whatever runs end by then (group commit): a burst of short runs costs
    /// one `fdatasync` per window, not one each, and their syncs do not queue
    /// on the disk ahead of the next runs' session writes.
    pub fn sync_soon(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.sync_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let log = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SYNC_WINDOW).await;
            // Cleared first: a run ending during the sync schedules the next.
            log.sync_due.store(false, Ordering::Release);
            log.sync().await;
        });
    }

    /// Writes the buffer [`WRITE_WINDOW`] from now, in the background (no
    /// sync): readers of the file alone, which take no lock and hold no
    /// engine, see a live run's events within that window, at the cost of
    /// one `write` per window per log. Outside an async runtime it does
    /// nothing (the buffer is written when full or when the run ends).
    pub fn write_soon(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        // A load first: the common case (already due) costs no write to the
        // shared cache line.
        if self.write_due.load(Ordering::Acquire) || self.write_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.write_due.store(false, Ordering::Release);
            return;
        };
        let log = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(WRITE_WINDOW).await;
            // Cleared first: an event appended during the write schedules the next.
            log.write_due.store(false, Ordering::Release);
            log.write_pending();
        });
    }

    /// A run starts publishing here.
    pub fn writer_started(&self) {
        self.writers
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// A run stopped publishing here. The last one out writes the buffer and
    /// cuts the ring to its newest [`IDLE_TAIL`] events (everything is in the
    /// file then), so a log nobody writes to holds little memory; readers
    /// further behind continue from the file. A log with a gap keeps its
    /// ring: those events are nowhere else.
    pub fn writer_finished(&self) {
        if self
            .writers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            != 1
        {
            return;
        }
        let mut st = lock(&self.state);
        self.write_out(&mut st);
        if st.gap_from.is_none() && self.writers.load(std::sync::atomic::Ordering::Acquire) == 0 {
            let cut = st.ring.len().saturating_sub(IDLE_TAIL);
            st.ring.drain(..cut);
            st.ring.shrink_to_fit();
            st.buf = Vec::new();
        }
    }

    /// No more events: readers end once they have read everything.
    pub fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        for w in st.waiters.drain(..) {
            w.wake();
        }
    }

    /// Removes the log: readers end at once, the file is deleted.
    pub fn delete(&self) {
        let mut st = lock(&self.state);
        st.deleted = true;
        st.closed = true;
        st.ring.clear();
        st.kept.clear();
        st.buf.clear();
        st.file = None;
        for w in st.waiters.drain(..) {
            w.wake();
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the event log of a deleted session");
            }
        }
    }
}

/// Whether `event` leaves the ring for the kept list when it falls into a
/// gap: a run's start and end and an approval request, which readers
/// count on (a child's tokens they can do without).
fn kept_in_a_gap(event: &AgentEvent) -> bool {
    matches!(
        event,
        AgentEvent::SubAgentStarted { .. }
            | AgentEvent::SubAgentCompleted { .. }
            | AgentEvent::ChildApprovalRequested { .. }
    )
}

/// Opens the log file for appending, creating it (0600) and its directory
/// (0700) as needed, whatever the umask.
fn open_for_append(path: &Path) -> std::io::Result<File> {
    use crate::store::private;
    if let Some(dir) = path.parent() {
        private::create_private_dir_all(dir)?;
    }
    let mut options = private::private_file_options();
    options.append(true).create(true);
    private::open_private(&options, path)
}

/// Where an existing file's numbering stands: `(next_seq, gap_from,
/// file_len)`. Cuts a torn last line away, and numbers on from the last line
/// that parses (damaged lines stay, for readers to report as lost). Logging
/// resumes after a gap: if the cap still holds, the next event says so.
fn recover(path: &Path) -> std::io::Result<(u64, Option<u64>, u64)> {
    let file = match File::options().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((1, None, 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let end = super::read::end_of_last_line(&file, len)?;
    if end < len {
        file.set_len(end)?;
    }
    let (last, damaged) = super::read::last_line(&file, end)?;
    if damaged > 0 {
        tracing::warn!(path = %path.display(), lines = damaged,
            "the event log ends in damaged lines (a write cut short); readers are told what they lost");
    }
    let next_seq = last.map_or(1, |l| line::last_seq(&l) + 1);
    Ok((next_seq, None, end))
}
