//! Live steering registry: while a child runs, its worker's frame sender
//! is registered here so `send_message` reaches it in-band. The registration is
//! removed the moment the run ends (guard drop), so a later message takes the
//! durable path instead of vanishing.
// Behaviours: E16.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bamboo_subagent::frames::ParentFrame;

use crate::launch::FrameTx;

/// A live run: its registration number, its sender, and the ids of the
/// messages already sent to it (each goes in-band once, whichever of
/// `steer` and `catch_up` gets to it first).
type Entry = (u64, Arc<dyn FrameTx>, HashSet<String>);
type Entries = HashMap<String, Entry>;

/// Child id → sender of its live run.
#[derive(Default)]
pub struct SteeringRegistry {
    live: Arc<Mutex<Entries>>,
    seq: AtomicU64,
}

impl std::fmt::Debug for SteeringRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteeringRegistry")
            .field("live", &lock(&self.live).len())
            .finish()
    }
}

/// Keeps a registration alive; unregisters on drop.
pub struct SteerGuard {
    child: String,
    seq: u64,
    live: Arc<Mutex<Entries>>,
}

impl std::fmt::Debug for SteerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteerGuard")
            .field("child", &self.child)
            .finish()
    }
}

impl Drop for SteerGuard {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        // Only remove our own registration, never a newer run's.
        if live
            .get(&self.child)
            .is_some_and(|(s, _, _)| *s == self.seq)
        {
            live.remove(&self.child);
        }
    }
}

fn lock(m: &Mutex<Entries>) -> std::sync::MutexGuard<'_, Entries> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SteeringRegistry {
    /// Registers the live run of `child`.
    pub fn register(&self, child: &str, tx: Arc<dyn FrameTx>) -> SteerGuard {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(child.to_owned(), (seq, tx, HashSet::new()));
        SteerGuard {
            child: child.to_owned(),
            seq,
            live: self.live.clone(),
        }
    }

    /// Sends message `id` (`text`) in-band to `child`'s live run. `false`
    /// when it has none or the send failed (the caller keeps the durable
    /// copy either way); `true` without sending when this run had it already.
    pub async fn steer(&self, child: &str, id: &str, text: &str) -> bool {
        let tx = {
            let mut live = lock(&self.live);
            let Some((_, tx, sent)) = live.get_mut(child) else {
                return false;
            };
            if !sent.insert(id.to_owned()) {
                return true;
            }
            tx.clone()
        };
        tx.send(ParentFrame::Message {
            text: text.to_owned(),
        })
        .await
        .is_ok()
    }

    /// Sends the live run of `child` the messages that reached its inbox
    /// before the run could take them in-band (sent while it was starting,
    /// or while no engine carried it), each once.
    pub async fn catch_up(&self, child: &str, waiting: Vec<(String, String)>) {
        for (id, text) in waiting {
            self.steer(child, &id, &text).await;
        }
    }

    /// True while `child` has a registered live run.
    #[cfg(test)]
    pub fn is_live(&self, child: &str) -> bool {
        lock(&self.live).contains_key(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::LinkError;
    use async_trait::async_trait;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<ParentFrame>>);

    #[async_trait]
    impl FrameTx for Recorder {
        async fn send(&self, frame: ParentFrame) -> Result<(), LinkError> {
            self.0.lock().unwrap().push(frame);
            Ok(())
        }
    }

    #[tokio::test]
    async fn steering_reaches_the_live_run_and_stops_when_it_ends() {
        let reg = SteeringRegistry::default();
        let rec = Arc::new(Recorder::default());
        let guard = reg.register("c", rec.clone());
        assert!(reg.steer("c", "m1", "left").await);
        assert_eq!(rec.0.lock().unwrap().len(), 1);
        drop(guard);
        assert!(!reg.is_live("c"));
        assert!(
            !reg.steer("c", "m2", "right").await,
            "no live run: durable path"
        );
    }

    #[tokio::test]
    async fn an_old_guard_does_not_remove_a_newer_registration() {
        let reg = SteeringRegistry::default();
        let old = reg.register("c", Arc::new(Recorder::default()));
        let _new = reg.register("c", Arc::new(Recorder::default()));
        drop(old);
        assert!(reg.is_live("c"));
    }

    #[tokio::test]
    async fn a_message_waiting_before_the_run_registered_reaches_it_once() {
        // Sent while the child was starting: in its inbox, not in-band.
        let reg = SteeringRegistry::default();
        assert!(!reg.steer("c", "early", "hello").await);
        let rec = Arc::new(Recorder::default());
        let _guard = reg.register("c", rec.clone());
        let waiting = vec![("early".to_owned(), "hello".to_owned())];
        reg.catch_up("c", waiting.clone()).await;
        // A second look at the inbox, or the sender retrying, sends nothing new.
        reg.catch_up("c", waiting).await;
        assert!(reg.steer("c", "early", "hello").await);
        let texts: Vec<_> = rec
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|f| match f {
                ParentFrame::Message { text } => text.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["hello"]);
    }
}
