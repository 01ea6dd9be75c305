//! The worker's lease in the pool's key-value bucket: written at join,
//! rewritten every third of the TTL and whenever its runs in flight change,
//! deleted on the
//! way out. A worker that dies stops renewing and its key expires with the
//! bucket's max age, which is how engines notice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::JoinOptions;
use crate::error::PoolError;
use crate::setup::PoolHandles;
use crate::wire::LeaseRecord;

/// One worker's lease.
#[derive(Clone)]
pub(crate) struct Lease {
    store: async_nats::jetstream::kv::Store,
    record: LeaseRecord,
    in_flight: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

impl Lease {
    pub fn new(
        pool: &PoolHandles,
        opts: &JoinOptions,
        id: &str,
        host: &str,
        in_flight: Arc<AtomicUsize>,
        changed: Arc<tokio::sync::Notify>,
    ) -> Self {
        let now = Utc::now();
        Self {
            store: pool.leases.clone(),
            record: LeaseRecord {
                pool: opts.pool.to_string(),
                id: id.to_owned(),
                host: host.to_owned(),
                pid: std::process::id(),
                version: opts.version.clone(),
                max_runs: opts.max_runs,
                runs_in_flight: 0,
                started_at: now,
                renewed_at: now,
            },
            in_flight,
            changed,
        }
    }

    /// Writes the lease now.
    pub async fn renew(&self) -> Result<(), PoolError> {
        let mut rec = self.record.clone();
        rec.runs_in_flight = self.in_flight.load(Ordering::Relaxed);
        rec.renewed_at = Utc::now();
        let body = serde_json::to_vec(&rec).unwrap_or_default();
        self.store
            .put(&rec.id, body.into())
            .await
            .map_err(|e| PoolError::js(format!("writing the lease of worker {}", rec.id), e))?;
        Ok(())
    }

    /// Renews every `period`, and at once when the runs in flight change,
    /// until aborted; a failed renewal is retried at the next tick (NATS may
    /// be restarting).
    pub async fn keep(self, period: Duration) {
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.changed.notified() => {}
            }
            if let Err(e) = self.renew().await {
                tracing::warn!(error = %e, "lease renewal failed; retrying");
            }
        }
    }

    /// Deletes the lease (graceful exit).
    pub async fn remove(&self) {
        if let Err(e) = self.store.purge(&self.record.id).await {
            tracing::warn!(error = %e, "could not remove the lease; it expires by itself");
        }
    }
}
