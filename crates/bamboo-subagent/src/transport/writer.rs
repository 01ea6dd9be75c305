//! The writer task shared by both sides: batches queued frames into one flush,
//! and pings the peer on the keepalive period.

use std::time::Duration;

use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Queue depth between producers and the socket writer. Deep enough to keep the
/// socket busy, shallow enough that a stalled peer pushes back on the producer.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// Largest WebSocket frame written. A longer frame (a long final answer and
/// its transcript) goes out as one message in several frames: the reader's
/// buffer grows to the largest frame it reads and keeps that size for as
/// long as the connection lives, while the message it assembles is freed
/// once read.
pub(crate) const FRAGMENT_BYTES: usize = 256 * 1024;

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
        if feed(&mut sink, first).await.is_err() {
            return;
        }
        while let Ok(next) = rx.try_recv() {
            if feed(&mut sink, next).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// Feeds one frame's text to `sink`: as one WebSocket frame, or when longer
/// than [`FRAGMENT_BYTES`] as a text frame and continuations (the last one
/// final), each a slice of the one buffer.
async fn feed<S>(sink: &mut S, text: String) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    if text.len() <= FRAGMENT_BYTES {
        return sink.feed(Message::text(text)).await;
    }
    let bytes = Bytes::from(text);
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + FRAGMENT_BYTES).min(bytes.len());
        let opcode = if at == 0 { Data::Text } else { Data::Continue };
        let frame = Frame::message(
            bytes.slice(at..end),
            OpCode::Data(opcode),
            end == bytes.len(),
        );
        sink.feed(Message::Frame(frame)).await?;
        at = end;
    }
    Ok(())
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

    #[tokio::test]
    async fn a_long_frame_goes_out_in_pieces_that_make_it_whole() {
        let (mut sink, out) = futures::channel::mpsc::unbounded::<Message>();
        let text: String = (0..3 * FRAGMENT_BYTES / 4 + 7)
            .map(|i| if i % 3 == 0 { "é" } else { "ab" })
            .collect();
        feed(&mut sink, "short".into()).await.unwrap();
        feed(&mut sink, text.clone()).await.unwrap();
        drop(sink);
        let got: Vec<Message> = out.collect().await;
        assert_eq!(got[0], Message::text("short"));
        let frames: Vec<&Frame> = got[1..]
            .iter()
            .map(|m| match m {
                Message::Frame(f) => f,
                other => panic!("a frame, not {other:?}"),
            })
            .collect();
        assert!(frames.len() > 1);
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let h = f.header();
            let want = if i == 0 { Data::Text } else { Data::Continue };
            assert_eq!(h.opcode, OpCode::Data(want));
            assert_eq!(h.is_final, i == frames.len() - 1);
            assert!(f.payload().len() <= FRAGMENT_BYTES);
            joined.extend_from_slice(f.payload());
        }
        assert_eq!(joined, text.as_bytes());
    }

    #[tokio::test]
    async fn a_long_frame_in_pieces_is_read_as_one_frame() {
        // Over a real socket: the reader (tungstenite's) assembles the
        // pieces, a character split across two of them included.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let text: String = "wé".repeat(FRAGMENT_BYTES);
        let sent = text.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let (sink, _stream) = ws.split();
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            tx.send(sent).await.unwrap();
            tx.send("after".into()).await.unwrap();
            drop(tx);
            write_frames(sink, rx, None).await;
        });
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert!(first == Message::text(text), "the long text, whole");
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("after"));
    }

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
