//! The writer task shared by both sides: batches queued frames into one flush.

use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Queue depth between producers and the socket writer. Deep enough to keep the
/// socket busy, shallow enough that a stalled peer pushes back on the producer.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// Writes every queued frame, flushing only when the queue is momentarily
/// empty. Ends when every sender is gone (after a close frame) or the socket fails.
pub(crate) async fn write_frames<S>(mut sink: S, mut rx: mpsc::Receiver<String>)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    while let Some(first) = rx.recv().await {
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
