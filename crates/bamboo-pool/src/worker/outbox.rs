//! A run's outgoing frames, batched onto its `out` subject: every line ready
//! at the moment of a publish goes in one JetStream message, and up to
//! [`IN_FLIGHT`] publishes wait for their acks at once, so a chatty run is
//! not held to one round trip per event.

use std::collections::VecDeque;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use tokio::sync::mpsc;

/// Lines of one message at most.
const MAX_LINES: usize = 4096;
/// Bytes of one message at most (the server's default max payload is 1 MiB).
const MAX_BYTES: usize = 512 * 1024;
/// Publishes awaiting their ack at most.
const IN_FLIGHT: usize = 64;

/// Publishes `lines` to `subject` until the sender side closes, then waits
/// for every ack. Each message carries a `Nats-Msg-Id` of run and batch, so
/// a retried publish is stored once.
pub(crate) async fn publish_lines(
    js: Context,
    subject: String,
    run_id: String,
    mut lines: mpsc::Receiver<String>,
) {
    let mut pending: VecDeque<PublishAckFuture> = VecDeque::new();
    let mut batch_no: u64 = 0;
    while let Some(first) = lines.recv().await {
        let mut body = first.into_bytes();
        let mut n = 1;
        while n < MAX_LINES && body.len() < MAX_BYTES {
            match lines.try_recv() {
                Ok(line) => {
                    body.push(b'\n');
                    body.extend_from_slice(line.as_bytes());
                    n += 1;
                }
                Err(_) => break,
            }
        }
        batch_no += 1;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{run_id}-{batch_no}").as_str());
        match js
            .publish_with_headers(subject.clone(), headers, body.into())
            .await
        {
            Ok(ack) => pending.push_back(ack),
            Err(e) => tracing::warn!(run = %run_id, error = %e, "could not publish run frames"),
        }
        while pending.len() > IN_FLIGHT {
            if let Some(ack) = pending.pop_front() {
                check(&run_id, ack.await);
            }
        }
    }
    for ack in pending {
        check(&run_id, ack.await);
    }
}

fn check<T, E: std::fmt::Display>(run_id: &str, r: Result<T, E>) {
    if let Err(e) = r {
        tracing::warn!(run = %run_id, error = %e, "NATS did not confirm run frames; the engine may miss some");
    }
}
