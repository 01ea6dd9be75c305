//! Per-session event streams: one broadcast channel per session. Publishing
//! never waits: a subscriber that falls behind loses the oldest events
//! (`RecvError::Lagged`) instead of blocking the child (E7).
//!
//! A channel preallocates its whole buffer, so it is created by the first
//! subscriber, not by the first publisher: a session nobody watches (most
//! children) costs no buffer, and publishing to it is one atomic load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bamboo_domain::AgentEvent;
use tokio::sync::broadcast;

/// The event streams of one engine.
#[derive(Debug)]
pub struct EventHub {
    capacity: usize,
    channels: Mutex<HashMap<String, Arc<Stream>>>,
}

/// One session's stream, as held by a publisher.
#[derive(Debug)]
pub struct Stream {
    capacity: usize,
    tx: OnceLock<broadcast::Sender<AgentEvent>>,
}

impl Stream {
    /// Whether anyone ever subscribed (lock-free): when not, an event need
    /// not even be built.
    pub fn is_watched(&self) -> bool {
        self.tx.get().is_some()
    }

    /// Whether a subscriber is listening now (takes the channel's lock).
    pub fn has_receivers(&self) -> bool {
        self.tx.get().is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Sends one event; dropped when nobody listens.
    pub fn send(&self, event: AgentEvent) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(event);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.tx
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }
}

impl EventHub {
    /// A hub whose channels buffer `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(16),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// `session`'s stream. Runs take it once, so the per-event path touches
    /// no engine lock.
    pub fn stream(&self, session: &str) -> Arc<Stream> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(session.to_owned())
            .or_insert_with(|| {
                Arc::new(Stream {
                    capacity: self.capacity,
                    tx: OnceLock::new(),
                })
            })
            .clone()
    }

    /// Subscribes to `session`'s stream from now on.
    pub fn subscribe(&self, session: &str) -> broadcast::Receiver<AgentEvent> {
        self.stream(session).subscribe()
    }

    /// Publishes one event; dropped when nobody listens.
    pub fn publish(&self, session: &str, event: AgentEvent) {
        self.stream(session).send(event);
    }

    /// Drops `session`'s channel (after delete); subscribers see the end.
    pub fn forget(&self, session: &str) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_subscriber_loses_events_but_never_blocks_the_publisher() {
        let hub = EventHub::new(16);
        let mut slow = hub.subscribe("p");
        for i in 0..1000 {
            hub.publish("p", AgentEvent::token(i.to_string()));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        // It then reads the newest events.
        assert!(slow.recv().await.is_ok());
    }

    #[tokio::test]
    async fn sessions_do_not_see_each_other() {
        let hub = EventHub::new(16);
        let mut a = hub.subscribe("a");
        hub.publish("b", AgentEvent::token("x"));
        hub.publish("a", AgentEvent::token("y"));
        assert_eq!(a.recv().await.unwrap(), AgentEvent::token("y"));
    }

    #[tokio::test]
    async fn a_stream_taken_before_the_first_subscriber_still_reaches_it() {
        let hub = EventHub::new(16);
        let held = hub.stream("p");
        assert!(!held.is_watched(), "no buffer until someone subscribes");
        held.send(AgentEvent::token("lost"));
        let mut rx = hub.subscribe("p");
        assert!(held.is_watched() && held.has_receivers());
        held.send(AgentEvent::token("seen"));
        assert_eq!(rx.recv().await.unwrap(), AgentEvent::token("seen"));
    }
}
