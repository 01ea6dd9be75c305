//! The pool worker (`bamboo-worker join`): dials out to NATS, keeps a lease
//! in the pool's bucket, takes runs from the shared work queue only while it
//! has a free slot, and serves each on its own task. On shutdown it stops
//! taking work, lets its runs finish (cancelling those still going after the
//! drain time), removes its lease and returns.

mod lease;
mod outbox;
mod run;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use run::ExecutorFactory;

use crate::connect::NatsOptions;
use crate::error::PoolError;
use crate::setup::{open_pool, PoolSettings};
use crate::subjects::PoolName;
use crate::wire::WorkItem;

/// How long leaving may wait on NATS for each step (lease removal, flush).
const LEAVE_BOUND: Duration = Duration::from_secs(5);

/// How long one pull request waits on the server for a run.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// What `join` was told.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// The server and credentials.
    pub nats: NatsOptions,
    /// The pool to join.
    pub pool: PoolName,
    /// Most runs served at once.
    pub max_runs: usize,
    /// Pool settings, used if this worker creates the pool.
    pub settings: PoolSettings,
    /// This worker's id; a fresh one when `None`.
    pub worker_id: Option<String>,
    /// On shutdown, how long running runs may take before they are cancelled.
    pub drain: Duration,
    /// Version published in the lease.
    pub version: String,
}

/// Joins the pool and serves runs until `shutdown` is cancelled. `ready` is
/// called once the lease is written and the worker takes work.
pub async fn join(
    opts: JoinOptions,
    factory: ExecutorFactory,
    shutdown: CancellationToken,
    ready: impl FnOnce(&str),
) -> Result<(), PoolError> {
    let client = opts.nats.connect().await?;
    let pool = open_pool(&client, &opts.pool, opts.settings).await?;
    let consumer = pool.work_consumer().await?;
    let worker_id = opts
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("w{}", uuid::Uuid::new_v4().simple()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let host = host_name();
    let changed = Arc::new(tokio::sync::Notify::new());
    let lease = lease::Lease::new(
        &pool,
        &opts,
        &worker_id,
        &host,
        in_flight.clone(),
        changed.clone(),
    );
    lease.renew().await?;
    let renewing = tokio::spawn(lease.clone().keep(opts.settings.lease_ttl / 3));
    let env = Arc::new(run::RunEnv {
        pool,
        worker_id: worker_id.clone(),
        host,
        factory,
    });
    tracing::info!(pool = %opts.pool, worker = %worker_id, max_runs = opts.max_runs, "joined the pool");
    ready(&worker_id);
    let runs = TaskTracker::new();
    let cancel_runs = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(opts.max_runs.max(1)));
    let counter = InFlight {
        n: in_flight.clone(),
        changed,
    };
    take_work(
        &consumer,
        &env,
        &slots,
        &runs,
        &counter,
        &cancel_runs,
        &shutdown,
    )
    .await;
    tracing::info!(worker = %worker_id, running = in_flight.load(Ordering::Relaxed), "leaving the pool: no new runs");
    runs.close();
    if tokio::time::timeout(opts.drain, runs.wait()).await.is_err() {
        tracing::warn!("runs still going after the drain time; cancelling them");
        cancel_runs.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), runs.wait()).await;
    }
    // Abort only asks: a renewal running on another thread could still
    // write the lease after its removal. Once the task is gone, every write
    // it made precedes the removal on this connection.
    renewing.abort();
    let _ = renewing.await;
    // NATS may be unreachable while we leave: the lease then expires by
    // itself, and nothing waits for a reconnect that may never come.
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    if !connected {
        tracing::warn!(
            "NATS is unreachable; leaving without removing the lease (it expires by itself)"
        );
    } else if tokio::time::timeout(LEAVE_BOUND, lease.remove())
        .await
        .is_err()
    {
        tracing::warn!("NATS did not answer the lease removal; the lease expires by itself");
    }
    if connected {
        let _ = tokio::time::timeout(LEAVE_BOUND, client.flush()).await;
    }
    Ok(())
}

/// The take loop: one pull of one run per free slot.
async fn take_work(
    consumer: &PullConsumer,
    env: &Arc<run::RunEnv>,
    slots: &Arc<Semaphore>,
    runs: &TaskTracker,
    in_flight: &InFlight,
    cancel_runs: &CancellationToken,
    shutdown: &CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let msg = loop {
            let batch = consumer
                .batch()
                .max_messages(1)
                .expires(PULL_EXPIRES)
                .messages();
            let next = async {
                match batch.await {
                    Ok(mut b) => b.next().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot ask the work queue for a run; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        None
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                m = next => match m {
                    Some(Ok(m)) => break m,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "pull ended without a run");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => {}
                },
            }
        };
        let item: WorkItem = match serde_json::from_slice(&msg.payload) {
            Ok(item) => item,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a malformed work item");
                let _ = msg.ack_with(AckKind::Term).await;
                continue;
            }
        };
        if chrono::Utc::now() > item.take_by {
            tracing::info!(run = %item.run_id, "dropping a run its engine gave up on");
            let _ = msg.double_ack().await;
            continue;
        }
        // Taking is final: a run is never rerun by another worker. The ack's
        // confirmation is awaited beside the run, not before it.
        let run_id = item.run_id.clone();
        tokio::spawn(async move {
            if let Err(e) = msg.double_ack().await {
                tracing::warn!(run = %run_id, error = %e, "could not confirm taking the run; serving it anyway");
            }
        });
        tracing::debug!(run = %item.run_id, "took a run");
        in_flight.add(1);
        let (env, in_flight, stop) = (env.clone(), in_flight.clone(), cancel_runs.clone());
        runs.spawn(async move {
            run::serve_run(env, item, stop).await;
            in_flight.add(-1);
            drop(permit);
        });
    }
}

/// The runs in flight, shared with the lease, which is rewritten on change.
#[derive(Clone)]
struct InFlight {
    n: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

impl InFlight {
    fn add(&self, delta: isize) {
        if delta >= 0 {
            self.n.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.n.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
        self.changed.notify_one();
    }
}

/// This machine's name, for leases and `taken` notices.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}
