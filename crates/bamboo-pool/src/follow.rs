//! Following one subject of a stream in order, from a start sequence, across
//! NATS reconnects. The client's ordered consumer notices a lost server-side
//! consumer only after two missed 15 s heartbeats; after a reconnect (a
//! nats-server restart loses ephemeral consumers) this follower recreates
//! its consumer at once from the last sequence it handed out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::{stream::Stream, Message};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::error::PoolError;

/// How often a follower checks for a reconnect while it waits.
const RECONNECT_CHECK: Duration = Duration::from_millis(250);

/// How long creating a consumer may keep failing before the follower gives up.
const OPEN_PATIENCE: Duration = Duration::from_secs(30);

type Messages =
    BoxStream<'static, Result<Message, async_nats::jetstream::consumer::pull::OrderedError>>;

/// Reads `subject` of `stream` in order.
pub(crate) struct Follower {
    client: async_nats::Client,
    stream: Stream,
    subject: String,
    /// Last stream sequence handed out (0: none).
    last_seq: u64,
    messages: Option<Messages>,
    connects: u64,
    tick: Interval,
    failing_since: Option<Instant>,
}

impl Follower {
    /// A follower of `subject` from just after `after_seq` (0: from the start).
    pub fn new(
        client: async_nats::Client,
        stream: Stream,
        subject: String,
        after_seq: u64,
    ) -> Self {
        let mut tick = tokio::time::interval_at(Instant::now() + RECONNECT_CHECK, RECONNECT_CHECK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            client,
            stream,
            subject,
            last_seq: after_seq,
            messages: None,
            connects: 0,
            tick,
            failing_since: None,
        }
    }

    fn connects(&self) -> u64 {
        self.client.statistics().connects.load(Ordering::Relaxed)
    }

    /// (Re)creates the server-side consumer from `last_seq + 1`.
    pub async fn open(&mut self) -> Result<(), PoolError> {
        self.connects = self.connects();
        let deliver_policy = match self.last_seq {
            0 => DeliverPolicy::All,
            n => DeliverPolicy::ByStartSequence {
                start_sequence: n + 1,
            },
        };
        let what = || format!("following {}", self.subject);
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| PoolError::js(what(), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| PoolError::js(what(), e))?;
        self.messages = Some(messages.boxed());
        Ok(())
    }

    /// The next message with its stream sequence. Errors only when the
    /// consumer cannot be created; a broken one is recreated.
    pub async fn next(&mut self) -> Result<(u64, Message), PoolError> {
        loop {
            if self.messages.is_none() {
                if let Err(e) = self.open().await {
                    // NATS may be restarting (JetStream comes up after the
                    // port): retry for a while, then report.
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > OPEN_PATIENCE {
                        return Err(e);
                    }
                    tokio::time::sleep(RECONNECT_CHECK).await;
                    continue;
                }
                self.failing_since = None;
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(self.last_seq + 1);
                        if seq <= self.last_seq {
                            continue;
                        }
                        self.last_seq = seq;
                        return Ok((seq, m));
                    }
                    Some(Err(e)) => tracing::debug!(subject = %self.subject, error = %e, "consumer hiccup; it recovers"),
                    None => self.messages = None,
                },
                _ = self.tick.tick() => {
                    if self.connects() != self.connects {
                        tracing::debug!(subject = %self.subject, "reconnected to NATS; recreating the consumer");
                        self.messages = None;
                    }
                }
            }
        }
    }
}
