//! Link keepalive: how often each side pings, and the silence tracker that
//! declares a link dead when no frame at all arrived for the limit.

use std::time::Duration;

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::time::{sleep_until, Instant, Sleep};

/// Ping period and silence limit of one link. Both sides ping every
/// `interval`; a side that received no frame at all (pong, ping or data) for
/// `timeout` treats the link as dead. A frozen (SIGSTOPped) peer or a cut
/// path is noticed this way; a peer that is merely busy still answers pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// How often a ping is sent.
    pub interval: Duration,
    /// How long the link may stay silent before it is dead.
    pub timeout: Duration,
}

impl Default for Keepalive {
    /// A ping every 2 s, dead after 8 s of silence (four missed pings).
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(8),
        }
    }
}

/// Tracks when the peer was last heard from, for a reader that may be
/// interrupted: a wait cut short (a `select!` picked another branch) keeps its
/// deadline, while a reader that comes back after doing other things (a parked
/// connection, a consumer busy with a frame) starts a fresh one, because its
/// own absence says nothing about the peer.
///
/// Hot path: a frame costs one clock read. The one timer is re-armed only
/// when it fires, to the deadline the latest frame implies.
#[derive(Debug)]
pub(crate) struct Silence {
    limit: Option<Duration>,
    last_seen: Instant,
    waiting: bool,
    timer: Pin<Box<Sleep>>,
}

impl Silence {
    /// A tracker with `limit`; `None` never declares the link dead.
    pub(crate) fn new(limit: Option<Duration>) -> Self {
        let now = Instant::now();
        Self {
            limit,
            last_seen: now,
            waiting: false,
            timer: Box::pin(sleep_until(now + limit.unwrap_or(Duration::ZERO))),
        }
    }

    /// Forgets time spent not reading (between runs).
    pub(crate) fn reset(&mut self) {
        self.last_seen = Instant::now();
        self.waiting = false;
    }

    /// The next item of `stream`, or `Err(limit)` once the peer was silent
    /// for the limit. Cancel-safe when the stream's `next` is.
    pub(crate) async fn next<S>(&mut self, stream: &mut S) -> Result<Option<S::Item>, Duration>
    where
        S: Stream + Unpin,
    {
        if !self.waiting {
            self.last_seen = Instant::now();
            self.waiting = true;
        }
        let Some(limit) = self.limit else {
            let item = stream.next().await;
            self.waiting = false;
            return Ok(item);
        };
        loop {
            tokio::select! {
                biased;
                item = stream.next() => {
                    self.last_seen = Instant::now();
                    self.waiting = false;
                    return Ok(item);
                }
                _ = &mut self.timer => {
                    let deadline = self.last_seen + limit;
                    if Instant::now() >= deadline {
                        return Err(limit);
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    const LIMIT: Duration = Duration::from_secs(8);

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_dead_after_exactly_the_limit() {
        let (_tx, mut rx) = mpsc::unbounded::<u8>();
        let mut silence = Silence::new(Some(LIMIT));
        let start = Instant::now();
        assert_eq!(silence.next(&mut rx).await, Err(LIMIT));
        assert_eq!(start.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_just_inside_the_limit_keep_the_link_alive() {
        let (tx, mut rx) = mpsc::unbounded::<u8>();
        tokio::spawn(async move {
            for i in 0..10 {
                tokio::time::sleep(LIMIT - Duration::from_millis(100)).await;
                let _ = tx.unbounded_send(i);
            }
            std::future::pending::<()>().await;
        });
        let mut silence = Silence::new(Some(LIMIT));
        for i in 0..10 {
            assert_eq!(silence.next(&mut rx).await, Ok(Some(i)));
        }
        assert_eq!(silence.next(&mut rx).await, Err(LIMIT));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupted_wait_keeps_its_deadline() {
        // Like the engine's pump: a 5 s heartbeat interrupts the read, which
        // must not restart the 8 s silence clock.
        let (_tx, mut rx) = mpsc::unbounded::<u8>();
        let mut silence = Silence::new(Some(LIMIT));
        let start = Instant::now();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        heartbeat.tick().await;
        let mut beats = 0;
        let outcome = loop {
            tokio::select! {
                _ = heartbeat.tick() => beats += 1,
                r = silence.next(&mut rx) => break r,
            }
        };
        assert_eq!(outcome, Err(LIMIT));
        assert_eq!(start.elapsed(), LIMIT);
        assert_eq!(beats, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_away_from_the_link_does_not_count() {
        let (tx, mut rx) = mpsc::unbounded::<u8>();
        let mut silence = Silence::new(Some(LIMIT));
        tx.unbounded_send(1).unwrap();
        assert_eq!(silence.next(&mut rx).await, Ok(Some(1)));
        // The reader is away for a minute (a parked connection), then waits again.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let back = Instant::now();
        assert_eq!(silence.next(&mut rx).await, Err(LIMIT));
        assert_eq!(back.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_waits_for_the_stream() {
        let (tx, mut rx) = mpsc::unbounded::<u8>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let mut silence = Silence::new(None);
        assert_eq!(silence.next(&mut rx).await, Ok(None));
    }
}
