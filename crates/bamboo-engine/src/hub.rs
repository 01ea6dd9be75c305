//! Per-session event streams: one broadcast channel per session. Publishing
//! never waits: a subscriber that falls behind loses the oldest events
//! (`RecvError::Lagged`) instead of blocking the child (E7).

use std::collections::HashMap;
use std::sync::Mutex;

use bamboo_domain::AgentEvent;
use tokio::sync::broadcast;

/// The event streams of one engine.
#[derive(Debug)]
pub struct EventHub {
    capacity: usize,
    channels: Mutex<HashMap<String, broadcast::Sender<AgentEvent>>>,
}

impl EventHub {
    /// A hub whose channels buffer `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(16),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The sender of `session`'s stream. Runs take it once, so the per-event
    /// path touches no engine lock.
    pub fn sender(&self, session: &str) -> broadcast::Sender<AgentEvent> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(session.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .clone()
    }

    /// Subscribes to `session`'s stream from now on.
    pub fn subscribe(&self, session: &str) -> broadcast::Receiver<AgentEvent> {
        self.sender(session).subscribe()
    }

    /// Publishes one event; dropped when nobody listens.
    pub fn publish(&self, session: &str, event: AgentEvent) {
        let _ = self.sender(session).send(event);
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
}
