//! The writer task shared by both sides: batches queued frames into one flush,
//! and pings the peer on the keepalive period.

use std::time::Duration;

use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// Queue depth between producers and the socket writer. Deep enough to keep the
/// socket busy, shallow enough that a stalled peer pushes back on the producer.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// Writes every queued frame, flushing only when the queue is momentarily
/// empty, and sends a ping every `ping_every` (when given) so the peer can
/// tell a live link from a dead one. Ends when every sender is gone (after a
/// close frame) or the socket fails.
pub(crate) async fn write_frames<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<String>,
    ping_every: Option<Duration>,
) where
    S: Sink<Message> + Unpin,
{
    let mut pings = ping_every.map(|p| {
        let mut i = interval_at(Instant::now() + p, p);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    loop {
        let first = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = tick(&mut pings) => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if sink.feed(Message::text(first)).await.is_err() {
            return;
        }
        while let Ok(next) = rx.try_recv() {
            if sink.feed(Message::text(next)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// The next ping tick; never, without keepalive.
async fn tick(pings: &mut Option<Interval>) {
    match pings {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn pings_go_out_on_the_period_between_frames() {
        let (sink, mut out) = futures::channel::mpsc::unbounded::<Message>();
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let start = Instant::now();
        tokio::spawn(write_frames(sink, rx, Some(Duration::from_secs(2))));
        assert!(matches!(out.next().await, Some(Message::Ping(_))));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        tx.send("hello".into()).await.unwrap();
        assert_eq!(out.next().await, Some(Message::text("hello")));
        assert!(matches!(out.next().await, Some(Message::Ping(_))));
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        drop(tx);
        // The close frame, then the end of the stream.
        while out.next().await.is_some() {}
    }

    #[tokio::test(start_paused = true)]
    async fn without_keepalive_no_ping_is_sent() {
        let (sink, mut out) = futures::channel::mpsc::unbounded::<Message>();
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_frames(sink, rx, None));
        tokio::time::sleep(Duration::from_secs(60)).await;
        tx.send("only".into()).await.unwrap();
        assert_eq!(out.next().await, Some(Message::text("only")));
    }
}
