//! Runs placed `Schedulable { pool }` go to a worker pool on NATS JetStream
//! (issue 12) through the same [`WorkerLauncher`] seam as local processes:
//! "launching" prepares the run, the link's first `run` frame queues it, and
//! the child's frames come back from the runs stream. The event pump, the
//! watchdog, approvals, steering and nested spawns are the local ones.
//!
//! [`PlacementLauncher`] routes each spec by its placement: schedulable to
//! the pool launcher, anything else to the local launcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bamboo_pool::{PoolClient, PoolName, RunReader, RunSender};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::{Placement, ProvisionSpec};

use crate::worker::{ActorWorker, FrameRx, FrameTx, LaunchError, Link, LinkError, WorkerLauncher};

/// Starts pool runs on NATS.
#[derive(Debug, Clone)]
pub struct NatsPoolLauncher {
    client: PoolClient,
}

impl NatsPoolLauncher {
    /// A launcher over a connected pool client.
    pub fn new(client: PoolClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl WorkerLauncher for NatsPoolLauncher {
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
        let Placement::Schedulable { pool } = &spec.placement else {
            return Err(LaunchError(
                "the NATS pool launcher only takes schedulable placements".into(),
            ));
        };
        let name = PoolName::new(pool).map_err(|e| LaunchError(e.to_string()))?;
        let (sender, reader) = self
            .client
            .prepare(&name, spec)
            .await
            .map_err(|e| LaunchError(e.to_string()))?;
        Ok(Box::new(PoolRun {
            sender: Arc::new(sender),
            reader: Mutex::new(Some(reader)),
            ended: Arc::new(AtomicBool::new(false)),
        }))
    }
}

/// One run on a pool: there is no local process. It counts as alive until
/// its run ends, so it is never parked for another run.
#[derive(Debug)]
struct PoolRun {
    sender: Arc<RunSender>,
    reader: Mutex<Option<RunReader>>,
    ended: Arc<AtomicBool>,
}

#[async_trait]
impl ActorWorker for PoolRun {
    fn pid(&self) -> Option<u32> {
        None
    }

    fn is_alive(&mut self) -> bool {
        !self.ended.load(Ordering::Acquire)
    }

    async fn connect(&self) -> Result<Link, LinkError> {
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| LinkError("a pool run has exactly one link".into()))?;
        Ok(Link {
            tx: Arc::new(Tx(self.sender.clone())),
            rx: Box::new(Rx {
                reader,
                ended: self.ended.clone(),
            }),
        })
    }

    /// The engine gave up on the run (cancel grace passed, shutdown): take it
    /// off the queue, or tell its worker to cancel.
    async fn kill(&mut self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.sender.abandon().await;
        }
    }
}

struct Tx(Arc<RunSender>);

#[async_trait]
impl FrameTx for Tx {
    async fn send(&self, frame: ParentFrame) -> Result<(), LinkError> {
        self.0
            .send(frame)
            .await
            .map_err(|e| LinkError(e.to_string()))
    }
}

struct Rx {
    reader: RunReader,
    ended: Arc<AtomicBool>,
}

#[async_trait]
impl FrameRx for Rx {
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>> {
        let next = self.reader.recv().await;
        if self.reader.is_done() {
            self.ended.store(true, Ordering::Release);
        }
        next.map(|r| r.map_err(|e| LinkError(e.to_string())))
    }

    fn is_closed(&mut self) -> bool {
        self.reader.is_done()
    }
}

/// Routes each spec by its placement: `schedulable` to the pool launcher,
/// `local` (and `remote`, which the local launcher reports on) to `local`.
#[derive(Debug)]
pub struct PlacementLauncher {
    local: Arc<dyn WorkerLauncher>,
    pool: Option<Arc<dyn WorkerLauncher>>,
}

impl PlacementLauncher {
    /// Routes schedulable specs to `pool` when there is one.
    pub fn new(local: Arc<dyn WorkerLauncher>, pool: Option<Arc<dyn WorkerLauncher>>) -> Self {
        Self { local, pool }
    }
}

#[async_trait]
impl WorkerLauncher for PlacementLauncher {
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
        match (&spec.placement, &self.pool) {
            (Placement::Schedulable { .. }, Some(pool)) => pool.launch(spec).await,
            (Placement::Schedulable { pool }, None) => Err(LaunchError(format!(
                "the child is placed on pool {pool:?} but this engine has no NATS pool client: configure one with EngineBuilder::nats_pool (front door: --nats URL --pool NAME)"
            ))),
            _ => self.local.launch(spec).await,
        }
    }
}

/// The local launcher of an engine built with a NATS pool and no worker
/// program: local placements fail with a clear error.
#[derive(Debug)]
pub struct NoLocalLauncher;

#[async_trait]
impl WorkerLauncher for NoLocalLauncher {
    async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
        Err(LaunchError(
            "this engine runs children on NATS pools only: place the child on a pool (metadata \"placement\") or configure worker_program".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_subagent::spec::ExecutorSpec;

    /// Stands for the local launcher: says it was asked.
    #[derive(Debug)]
    struct Local;

    #[async_trait]
    impl WorkerLauncher for Local {
        async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
            Err(LaunchError("local".into()))
        }
    }

    fn spec(placement: Placement) -> ProvisionSpec {
        let mut s = ProvisionSpec::new("w", ExecutorSpec::Echo, "/f");
        s.placement = placement;
        s
    }

    #[tokio::test]
    async fn placements_route_to_their_launcher() {
        let router = PlacementLauncher::new(Arc::new(Local), None);
        let err = router.launch(&spec(Placement::Local)).await.unwrap_err();
        assert_eq!(err.0, "local");
        let pool = Placement::Schedulable { pool: "gpu".into() };
        let err = router.launch(&spec(pool)).await.unwrap_err();
        assert!(err.0.contains("\"gpu\""), "{err}");
        assert!(err.0.contains("nats_pool"), "{err}");
        let err = NoLocalLauncher
            .launch(&spec(Placement::Local))
            .await
            .unwrap_err();
        assert!(err.0.contains("NATS pools only"), "{err}");
    }
}
