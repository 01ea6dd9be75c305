//! Slows down peers that keep presenting a wrong token: each further failure
//! from one IP address waits twice as long before its 401, up to a cap, so
//! guessing the token online is hopeless while a typo costs nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The first failure is answered at once; the second after this long.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// The longest wait before a 401.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A peer that stopped failing this long ago starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Peers remembered at most; beyond it the oldest record is dropped.
const MAX_PEERS: usize = 4096;

/// Failure counts per peer address.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// Records a failure of `peer` and returns how long to wait before
    /// answering it.
    pub(crate) fn failed(&self, peer: IpAddr) -> Duration {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
            if peers.len() >= MAX_PEERS {
                if let Some(oldest) = peers.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    peers.remove(&oldest);
                }
            }
        }
        let entry = peers.entry(peer).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay_for(entry.0)
    }

    /// A peer that presented the right token starts afresh.
    pub(crate) fn succeeded(&self, peer: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.remove(&peer);
    }
}

/// Wait before answering the `n`th failure in a row (1-based).
fn delay_for(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let doublings = (n - 2).min(16);
    BASE_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_from_one_peer_wait_longer_and_longer_up_to_the_cap() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let waits: Vec<_> = (0..9).map(|_| t.failed(a)).collect();
        assert_eq!(waits[0], Duration::ZERO, "a typo costs nothing");
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[2], Duration::from_millis(400));
        assert_eq!(waits[8], MAX_DELAY);
        assert_eq!(t.failed(b), Duration::ZERO, "other peers are not affected");
        t.succeeded(a);
        assert_eq!(t.failed(a), Duration::ZERO, "success starts afresh");
        tokio::time::advance(FORGET_AFTER).await;
        assert_eq!(t.failed(b), Duration::ZERO, "old failures are forgotten");
    }
}
