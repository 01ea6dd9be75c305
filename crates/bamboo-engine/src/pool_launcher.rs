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
use bamboo_domain::AgentEvent;
use bamboo_pool::{PoolClient, PoolName, RunPosition, RunReader, RunSender};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::{Placement, ProvisionSpec};
use tokio::time::Instant;

use crate::pool_journal::{PoolJournal, PoolRunRecord, CHECKPOINT_EVERY};
use crate::worker::{
    ActorWorker, FrameRx, FrameTx, LaunchError, Link, LinkError, LogWriter, WorkerLauncher,
};

/// Starts pool runs on NATS.
#[derive(Debug, Clone)]
pub struct NatsPoolLauncher {
    client: PoolClient,
    journal: Option<Arc<PoolJournal>>,
}

impl NatsPoolLauncher {
    /// A launcher over a connected pool client.
    pub fn new(client: PoolClient) -> Self {
        Self {
            client,
            journal: None,
        }
    }

    /// Records each run in flight in `journal`, so a restarted engine
    /// reattaches to it ([`NatsPoolLauncher::reattach`]).
    pub(crate) fn with_journal(mut self, journal: Arc<PoolJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The run of `rec`, read on from its recorded position: a run a
    /// previous engine started and did not see end.
    pub(crate) async fn reattach(
        &self,
        rec: PoolRunRecord,
    ) -> Result<Box<dyn ActorWorker>, LaunchError> {
        let name = PoolName::new(&rec.pool).map_err(|e| LaunchError(e.to_string()))?;
        let (sender, reader) = self
            .client
            .attach(&name, &rec.run_id, rec.position)
            .await
            .map_err(|e| LaunchError(e.to_string()))?;
        let journal = self.journal.clone().map(|j| Checkpoints::new(j, rec));
        Ok(Box::new(PoolRun::new(sender, reader, journal)))
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
        let journal = self.journal.clone().map(|j| {
            let rec = PoolRunRecord {
                // The session id comes with `bind_run`, before the run is sent.
                child_id: String::new(),
                pool: pool.clone(),
                run_id: sender.run_id().to_owned(),
                position: RunPosition::default(),
            };
            Checkpoints::new(j, rec)
        });
        Ok(Box::new(PoolRun::new(sender, reader, journal)))
    }
}

/// One run on a pool: there is no local process. It counts as alive until
/// its run ends, so it is never parked for another run.
#[derive(Debug)]
struct PoolRun {
    sender: Arc<RunSender>,
    reader: Mutex<Option<RunReader>>,
    ended: Arc<AtomicBool>,
    journal: Arc<Mutex<Option<Checkpoints>>>,
}

impl PoolRun {
    fn new(sender: RunSender, reader: RunReader, journal: Option<Checkpoints>) -> Self {
        Self {
            sender: Arc::new(sender),
            reader: Mutex::new(Some(reader)),
            ended: Arc::new(AtomicBool::new(false)),
            journal: Arc::new(Mutex::new(journal)),
        }
    }
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
            tx: Arc::new(Tx {
                sender: self.sender.clone(),
                journal: self.journal.clone(),
            }),
            rx: Box::new(Rx {
                reader,
                held: None,
                placed: false,
                ended: self.ended.clone(),
                journal: self.journal.clone(),
                write_logs: None,
                quiet: Box::pin(tokio::time::sleep(CHECKPOINT_EVERY)),
            }),
        })
    }

    /// The engine gave up on the run (cancel grace passed, shutdown): take it
    /// off the queue, or tell its worker to cancel.
    async fn kill(&mut self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.sender.abandon().await;
        }
        if let Some(j) = lock(&self.journal).take() {
            j.forget();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A run's record in the journal and when it was last written.
#[derive(Debug)]
struct Checkpoints {
    journal: Arc<PoolJournal>,
    rec: PoolRunRecord,
    written: Option<Instant>,
}

impl Checkpoints {
    fn new(journal: Arc<PoolJournal>, rec: PoolRunRecord) -> Self {
        Self {
            journal,
            rec,
            written: None,
        }
    }

    /// Records that every frame up to `position` is in the event logs
    /// (`write_logs` makes that true first). Skipped when nothing moved or
    /// the last record is recent, unless `now`.
    fn record(&mut self, position: RunPosition, write_logs: Option<&LogWriter>, now: bool) {
        let recent = self.written.is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY);
        if self.written.is_some() && (position == self.rec.position || (recent && !now)) {
            return;
        }
        if self.rec.child_id.is_empty() {
            return;
        }
        if let Some(write) = write_logs {
            write();
        }
        self.rec.position = position;
        self.written = Some(Instant::now());
        if let Err(e) = self.journal.save(&self.rec) {
            tracing::warn!(child = %self.rec.child_id, error = %e, "cannot record the pool run's position; an engine restart would lose the run");
        }
    }

    fn forget(self) {
        if !self.rec.child_id.is_empty() {
            self.journal.remove(&self.rec.child_id);
        }
    }
}

struct Tx {
    sender: Arc<RunSender>,
    journal: Arc<Mutex<Option<Checkpoints>>>,
}

#[async_trait]
impl FrameTx for Tx {
    async fn send(&self, frame: ParentFrame) -> Result<(), LinkError> {
        let queues = matches!(frame, ParentFrame::Run(_));
        self.sender
            .send(frame)
            .await
            .map_err(|e| LinkError(e.to_string()))?;
        if queues {
            // From now on the run exists without this engine.
            if let Some(j) = lock(&self.journal).as_mut() {
                j.record(RunPosition::default(), None, true);
            }
        }
        Ok(())
    }
}

struct Rx {
    reader: RunReader,
    /// The frame read together with the "taken" notice, handed out after
    /// the `placed` event that notice becomes.
    held: Option<Option<Result<ChildFrame, bamboo_pool::PoolError>>>,
    /// The `placed` event was handed out.
    placed: bool,
    ended: Arc<AtomicBool>,
    journal: Arc<Mutex<Option<Checkpoints>>>,
    write_logs: Option<LogWriter>,
    /// Fires every [`CHECKPOINT_EVERY`] while a frame is awaited.
    quiet: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Rx {
    /// Every frame handed out before this call is published (the pump asks
    /// for the next only after handling the last), so its position may be
    /// recorded once the logs are written.
    fn checkpoint(&self, position: RunPosition, now: bool) {
        if let Some(j) = lock(&self.journal).as_mut() {
            j.record(position, self.write_logs.as_ref(), now);
        }
    }
}

#[async_trait]
impl FrameRx for Rx {
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>> {
        if let Some(next) = self.held.take() {
            return next.map(|r| r.map_err(|e| LinkError(e.to_string())));
        }
        let handed_out = self.reader.position();
        self.checkpoint(handed_out, false);
        // A run that goes quiet (waiting for steering, thinking) still gets
        // its last position recorded: one timer for the link's life, not
        // one per frame.
        let next = {
            let reading = self.reader.recv();
            tokio::pin!(reading);
            loop {
                tokio::select! {
                    next = &mut reading => break next,
                    _ = &mut self.quiet => {
                        self.quiet.as_mut().reset(Instant::now() + CHECKPOINT_EVERY);
                        if let Some(j) = lock(&self.journal).as_mut() {
                            j.record(handed_out, self.write_logs.as_ref(), true);
                        }
                    }
                }
            }
        };
        if self.reader.is_done() {
            self.ended.store(true, Ordering::Release);
            if let Some(j) = lock(&self.journal).take() {
                j.forget();
            }
        }
        // Queued until a worker took it: the parent is told which one.
        if !self.placed {
            if let Some(taken) = self.reader.worker() {
                self.placed = true;
                let placed = AgentEvent::Placed {
                    placement: "pool".into(),
                    worker: taken.worker.clone(),
                    host: Some(taken.host.clone()),
                };
                self.held = Some(next);
                return Some(Ok(ChildFrame::Event { event: placed }));
            }
        }
        next.map(|r| r.map_err(|e| LinkError(e.to_string())))
    }

    fn is_closed(&mut self) -> bool {
        self.reader.is_done()
    }

    fn bind_run(&mut self, child_id: &str, write_logs: LogWriter) {
        self.write_logs = Some(write_logs);
        if let Some(j) = lock(&self.journal).as_mut() {
            j.rec.child_id = child_id.to_owned();
        }
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
