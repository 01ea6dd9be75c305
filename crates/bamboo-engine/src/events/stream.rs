//! A subscriber: reads a session's log from a position, from memory while it
//! keeps up and from the file when it has fallen behind, with no gap and no
//! duplicate. Its memory is one batch (at most `DISK_BATCH` events).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bamboo_domain::AgentEvent;
use futures::Stream;
use tokio::task::JoinHandle;

use super::log::{Plan, SessionLog};
use super::read::{read_batch, Batch, BatchEnd};
use super::{LoggedEvent, Since};

/// Events taken from memory per look at the log.
const RING_BATCH: usize = 256;
/// Events read from the file per batch.
const DISK_BATCH: usize = 1024;

/// A session's events in order, from [`crate::Engine::events`] or
/// [`crate::Engine::logged_events`]. Needs a tokio runtime to be polled
/// (reads of the file run on its blocking threads).
#[derive(Debug)]
pub struct EventStream {
    log: Option<Arc<SessionLog>>,
    /// The next sequence number to yield.
    next: u64,
    /// Stop before this sequence number.
    until: Option<u64>,
    /// Events taken from memory or read from the file, not yet yielded.
    queue: VecDeque<LoggedEvent>,
    /// A file read in flight, and the limit it was planned with.
    reading: Option<(JoinHandle<std::io::Result<Batch>>, u64)>,
    /// Where the last file batch stopped: `(offset, seq)`.
    cursor: Option<(u64, u64)>,
    /// The file has nothing more before the ring: the rest is a gap.
    file_exhausted: bool,
}

impl EventStream {
    pub(crate) fn new(log: Arc<SessionLog>, since: Since, until_now: bool) -> Self {
        let now = log.next_seq();
        let next = match since {
            Since::Start => 1,
            Since::After(n) => n.saturating_add(1),
            Since::Now => now,
        };
        Self {
            log: Some(log),
            next,
            until: until_now.then_some(now),
            queue: VecDeque::new(),
            reading: None,
            cursor: None,
            file_exhausted: false,
        }
    }

    /// A stream with nothing in it (for an id that is no session).
    pub(crate) fn empty() -> Self {
        Self {
            log: None,
            next: 1,
            until: None,
            queue: VecDeque::new(),
            reading: None,
            cursor: None,
            file_exhausted: false,
        }
    }

    /// The sequence number of the next event this stream will yield.
    pub fn position(&self) -> u64 {
        self.next
    }

    fn gap(&mut self, log: &SessionLog, first: u64, last: u64) -> LoggedEvent {
        self.next = last + 1;
        self.cursor = None;
        gap_event(log, first, last)
    }

    fn take_batch(&mut self, log: &SessionLog, batch: Batch, limit: u64) {
        if let Some(last) = batch.events.last() {
            self.next = last.seq + 1;
        }
        self.cursor = Some((batch.next_offset, self.next));
        self.queue.extend(batch.events);
        match batch.end {
            BatchEnd::Limit | BatchEnd::Full => {}
            BatchEnd::Hole { first, last } => {
                self.queue.push_back(gap_event(log, first, last));
                self.next = last + 1;
                // The file goes on right where the batch stopped.
                self.cursor = Some((batch.next_offset, self.next));
            }
            BatchEnd::Eof => self.file_exhausted = self.next < limit,
        }
    }
}

/// The event that stands for `first..=last`, which no reader can have.
fn gap_event(log: &SessionLog, first: u64, last: u64) -> LoggedEvent {
    LoggedEvent {
        seq: last,
        time: chrono::Utc::now(),
        event: Arc::new(AgentEvent::EventsTruncated {
            session_id: log.id().to_owned(),
            first_seq: first,
            last_seq: last,
            reason: "these events are not in the session's event log: it reached its size cap \
                     (raise EngineBuilder::event_log_cap) or could not be written, e.g. on a \
                     full disk (see the engine's log)"
                .into(),
        }),
    }
}

impl Stream for EventStream {
    type Item = LoggedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LoggedEvent>> {
        let this = &mut *self;
        loop {
            if let Some(e) = this.queue.pop_front() {
                return Poll::Ready(Some(e));
            }
            let Some(log) = this.log.clone() else {
                return Poll::Ready(None);
            };
            if let Some((reading, limit)) = this.reading.as_mut() {
                let limit = *limit;
                let done = match Pin::new(reading).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(done) => done,
                };
                this.reading = None;
                match done {
                    Ok(Ok(batch)) => this.take_batch(&log, batch, limit),
                    Ok(Err(e)) => {
                        tracing::warn!(path = %log.path().display(), error = %e, "cannot read the event log back");
                        this.file_exhausted = true;
                    }
                    Err(_) => this.file_exhausted = true,
                }
                continue;
            }
            let until = this.until;
            match log.plan(this.next, until, RING_BATCH, cx.waker(), &mut this.queue) {
                Plan::Memory => {
                    if let Some(last) = this.queue.back() {
                        this.next = last.seq + 1;
                    }
                    this.file_exhausted = false;
                }
                Plan::Gap { first, last } => {
                    let last = until.map_or(last, |u| last.min(u - 1));
                    return Poll::Ready(Some(this.gap(&log, first, last)));
                }
                Plan::Disk { offset, limit } => {
                    let limit = until.map_or(limit, |u| limit.min(u));
                    if this.file_exhausted {
                        this.file_exhausted = false;
                        let first = this.next;
                        return Poll::Ready(Some(this.gap(&log, first, limit - 1)));
                    }
                    let offset = match this.cursor {
                        Some((off, seq)) if seq == this.next => off,
                        _ => offset,
                    };
                    let (path, next) = (log.path().to_owned(), this.next);
                    let read = tokio::task::spawn_blocking(move || {
                        read_batch(&path, offset, next, limit, DISK_BATCH)
                    });
                    this.reading = Some((read, limit));
                }
                Plan::Wait => return Poll::Pending,
                Plan::End => {
                    this.log = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}
