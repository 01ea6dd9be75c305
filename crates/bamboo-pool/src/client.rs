//! The engine's side of a pool: submit a run to the work queue, send it
//! control frames, read its frames back from the runs stream, notice a
//! queue timeout and the death of the worker that took it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bamboo_subagent::frames::{ParentFrame, RunRequest};
use bamboo_subagent::spec::{ProvisionSpec, Secrets};
use chrono::Utc;
use tokio::sync::watch;

use crate::connect::NatsOptions;
use crate::error::PoolError;
use crate::reader::{RunPosition, RunReader};
use crate::setup::{open_pool, PoolHandles, PoolSettings};
use crate::subjects::{new_run_id, PoolName};
use crate::wire::WorkItem;

/// Engine-side timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// A run no worker took within this ends as an error.
    pub queue_timeout: Duration,
    /// How often the lease of the worker serving a run is checked.
    pub lease_check: Duration,
    /// Server-side pool settings, used if the engine creates the pool.
    pub pool: PoolSettings,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            queue_timeout: Duration::from_secs(300),
            lease_check: Duration::from_secs(1),
            pool: PoolSettings::default(),
        }
    }
}

/// A connection to NATS shared by every pool run of one engine.
#[derive(Debug, Clone)]
pub struct PoolClient {
    client: async_nats::Client,
    url: String,
    settings: ClientSettings,
    pools: Arc<tokio::sync::Mutex<HashMap<String, PoolHandles>>>,
}

impl PoolClient {
    /// Connects; fails at once with a clear error on a wrong URL or
    /// credentials.
    pub async fn connect(nats: &NatsOptions, settings: ClientSettings) -> Result<Self, PoolError> {
        Ok(Self {
            client: nats.connect().await?,
            url: nats.url.clone(),
            settings,
            pools: Default::default(),
        })
    }

    /// The engine-side settings.
    pub fn settings(&self) -> ClientSettings {
        self.settings
    }

    /// Handles on pool `name`, opened once.
    pub async fn pool(&self, name: &PoolName) -> Result<PoolHandles, PoolError> {
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(name.as_str()) {
            return Ok(p.clone());
        }
        let p = open_pool(&self.client, name, self.settings.pool).await?;
        pools.insert(name.to_string(), p.clone());
        Ok(p)
    }

    /// A run of `spec` on pool `name`, not yet queued: its [`RunSender`]
    /// queues it with the first `run` frame; its [`RunReader`] reads it.
    pub async fn prepare(
        &self,
        name: &PoolName,
        spec: &ProvisionSpec,
    ) -> Result<(RunSender, RunReader), PoolError> {
        let pool = self.pool(name).await?;
        let mut spec = spec.clone();
        // Pool workers hold their own credentials: nothing secret leaves.
        spec.secrets = Secrets::default();
        let run_id = new_run_id();
        let shared = Shared::new(pool, run_id, RunState::Prepared);
        let sender = RunSender {
            shared: shared.clone(),
            spec,
            queue_timeout: self.settings.queue_timeout,
        };
        let reader = RunReader::new(
            shared,
            self.settings,
            self.url.clone(),
            RunPosition::default(),
        );
        Ok((sender, reader))
    }

    /// Reads run `run_id` of pool `name` on from `position` (the reader of
    /// an engine that restarted): every frame after it, none twice.
    pub async fn attach(
        &self,
        name: &PoolName,
        run_id: &str,
        position: RunPosition,
    ) -> Result<(RunSender, RunReader), PoolError> {
        let pool = self.pool(name).await?;
        let shared = Shared::new(pool, run_id.to_owned(), RunState::Queued);
        let sender = RunSender {
            shared: shared.clone(),
            spec: ProvisionSpec::new(run_id, bamboo_subagent::spec::ExecutorSpec::Echo, ""),
            queue_timeout: self.settings.queue_timeout,
        };
        let reader = RunReader::new(shared, self.settings, self.url.clone(), position);
        Ok((sender, reader))
    }
}

/// Where a run stands, as the sender knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Not queued yet.
    Prepared,
    /// In the work queue (or taken: the reader learns that from the stream).
    Queued,
    /// Removed from the queue before any worker took it.
    CancelledQueued,
    /// The server did not store the work item (see `Shared::failure`).
    QueueFailed,
}

/// What a run's sender and reader share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub pool: PoolHandles,
    pub run_id: String,
    pub state: watch::Sender<RunState>,
    work_seq: Mutex<Option<u64>>,
    /// Why queueing failed.
    pub failure: Mutex<Option<String>>,
}

impl Shared {
    fn new(pool: PoolHandles, run_id: String, state: RunState) -> Arc<Self> {
        Arc::new(Self {
            pool,
            run_id,
            state: watch::Sender::new(state),
            work_seq: Mutex::new(None),
            failure: Mutex::new(None),
        })
    }

    /// Removes the run from the work queue if no worker has it yet; true
    /// when it was removed (the run is then over).
    pub async fn unqueue(&self) -> bool {
        let seq = self.work_seq.lock().ok().and_then(|g| *g);
        let Some(seq) = seq else { return false };
        match self.pool.work.delete_message(seq).await {
            Ok(true) => {
                self.state.send_replace(RunState::CancelledQueued);
                // A worker that fetched it in the same instant sees the cancel.
                let _ = self.control(&ParentFrame::Cancel).await;
                true
            }
            _ => false,
        }
    }

    /// Publishes one control frame and waits until the server stored it.
    pub async fn control(&self, frame: &ParentFrame) -> Result<(), PoolError> {
        let what = || format!("sending a control frame to run {}", self.run_id);
        self.pool
            .js
            .publish(
                self.pool.name.in_subject(&self.run_id),
                frame.to_text().into(),
            )
            .await
            .map_err(|e| PoolError::js(what(), e))?
            .await
            .map_err(|e| PoolError::js(what(), e))?;
        Ok(())
    }
}

/// Sends a run's frames: the first `run` frame queues it, later frames go
/// to its control subject.
#[derive(Debug)]
pub struct RunSender {
    shared: Arc<Shared>,
    spec: ProvisionSpec,
    queue_timeout: Duration,
}

impl RunSender {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// Sends one frame.
    pub async fn send(&self, frame: ParentFrame) -> Result<(), PoolError> {
        match frame {
            ParentFrame::Run(request) => self.queue(request).await,
            ParentFrame::Cancel => {
                if self.shared.unqueue().await {
                    return Ok(());
                }
                self.shared.control(&ParentFrame::Cancel).await
            }
            other => self.shared.control(&other).await,
        }
    }

    async fn queue(&self, request: RunRequest) -> Result<(), PoolError> {
        let s = &self.shared;
        let now = Utc::now();
        let wait = chrono::Duration::from_std(self.queue_timeout).unwrap_or(chrono::Duration::MAX);
        let item = WorkItem {
            run_id: s.run_id.clone(),
            spec: self.spec.clone(),
            request,
            queued_at: now,
            take_by: now.checked_add_signed(wait).unwrap_or(now),
        };
        let body = serde_json::to_vec(&item).unwrap_or_default();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", s.run_id.as_str());
        let what = format!("queueing run {} on pool {}", s.run_id, s.pool.name);
        let ack = s
            .pool
            .js
            .publish_with_headers(s.pool.name.work_subject(), headers, body.into())
            .await
            .map_err(|e| PoolError::js(what, e))?;
        // The server's confirmation is awaited off the caller's path: the
        // reader opens its consumer meanwhile and learns the outcome from
        // the run's state.
        let shared = s.clone();
        tokio::spawn(async move {
            match ack.await {
                Ok(ack) => {
                    if let Ok(mut seq) = shared.work_seq.lock() {
                        *seq = Some(ack.sequence);
                    }
                    shared.state.send_replace(RunState::Queued);
                }
                Err(e) => {
                    if let Ok(mut f) = shared.failure.lock() {
                        *f = Some(e.to_string());
                    }
                    shared.state.send_replace(RunState::QueueFailed);
                }
            }
        });
        Ok(())
    }

    /// Removes the run from the queue when it is still there (the engine
    /// gave up on it).
    pub async fn abandon(&self) {
        if !self.shared.unqueue().await {
            let _ = self.shared.control(&ParentFrame::Cancel).await;
        }
    }
}
