//! The launcher of `Placement::Schedulable { pool }`: runs go to a worker
//! pool on NATS JetStream (issue 12). "Launching" prepares the run, the
//! link's first `run` frame queues it, and the child's frames come back from
//! the runs stream. The event pump, the watchdog, approvals, steering and
//! nested spawns are the local ones. Each run in flight is recorded in the
//! [`journal`] with its read position, so a restarted engine reattaches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::AgentEvent;
use bamboo_pool::{PoolClient, PoolName, RunPosition, RunReader, RunSender};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::{Placement, ProvisionSpec};
use tokio::time::Instant;

use super::{Checkpoint, FrameRx, FrameTx, LaunchError, Launcher, Link, LinkError, Worker};

mod journal;

pub(crate) use journal::{PoolJournal, PoolRunRecord, CHECKPOINT_EVERY};

/// Starts pool runs on NATS.
#[derive(Debug, Clone)]
pub(crate) struct PoolLauncher {
    client: PoolClient,
    journal: Option<Arc<PoolJournal>>,
}

impl PoolLauncher {
    /// A launcher over a connected pool client.
    pub(crate) fn new(client: PoolClient) -> Self {
        Self {
            client,
            journal: None,
        }
    }

    /// Records each run in flight in `journal`, so a restarted engine
    /// reattaches to it ([`PoolLauncher::reattach`]).
    pub(crate) fn with_journal(mut self, journal: Arc<PoolJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The run of `rec`, read on from its recorded position: a run a
    /// previous engine started and did not see end.
    pub(crate) async fn reattach(
        &self,
        rec: PoolRunRecord,
    ) -> Result<Box<dyn Worker>, LaunchError> {
        let name = PoolName::new(&rec.pool)?;
        let (sender, reader) = self.client.attach(&name, &rec.run_id, rec.position).await?;
        let journal = self.journal.clone().map(|j| Checkpoints::new(j, rec));
        Ok(Box::new(PoolRun::new(sender, reader, journal)))
    }
}

#[async_trait]
impl Launcher for PoolLauncher {
    /// Prepares a run on the pool the spec is placed on (the router sends
    /// only `schedulable` specs here).
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        let pool = match &spec.placement {
            Placement::Schedulable { pool } => pool,
            other => {
                return Err(LaunchError::Other(
                    format!("the NATS pool launcher was asked for a {other:?} placement").into(),
                ))
            }
        };
        let name = PoolName::new(pool)?;
        let (sender, reader) = self.client.prepare(&name, spec).await?;
        let journal = self.journal.clone().map(|j| {
            let rec = PoolRunRecord {
                // The session id comes with `Checkpoint::bind`, before the run is sent.
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
impl Worker for PoolRun {
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
            .ok_or(LinkError::SecondPoolLink)?;
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
    /// The read position after every frame handed out to the pump.
    handed_out: RunPosition,
}

impl Checkpoints {
    fn new(journal: Arc<PoolJournal>, rec: PoolRunRecord) -> Self {
        let handed_out = rec.position;
        Self {
            journal,
            rec,
            written: None,
            handed_out,
        }
    }

    /// Whether a record of the frames handed out is due: never before the
    /// child is named; always for the first; else when the position moved
    /// and the last record is not recent (or `now`).
    fn due(&self, now: bool) -> bool {
        if self.rec.child_id.is_empty() {
            return false;
        }
        let Some(written) = self.written else {
            return true;
        };
        let recent = written.elapsed() < CHECKPOINT_EVERY;
        self.handed_out != self.rec.position && (now || !recent)
    }

    /// Records `position`: every frame up to it is in the event logs.
    fn record(&mut self, position: RunPosition) {
        if self.rec.child_id.is_empty() {
            return;
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
        self.sender.send(frame).await?;
        if queues {
            // From now on the run exists without this engine.
            if let Some(j) = lock(&self.journal).as_mut() {
                j.record(RunPosition::default());
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
}

impl Rx {
    /// Notes that every frame read so far has been handed out.
    fn handed_out(&self) {
        if let Some(j) = lock(&self.journal).as_mut() {
            j.handed_out = self.reader.position();
        }
    }
}

#[async_trait]
impl FrameRx for Rx {
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>> {
        if let Some(next) = self.held.take() {
            self.handed_out();
            return next.map(|r| r.map_err(LinkError::Pool));
        }
        let next = self.reader.recv().await;
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
                // The frame read with it is not handed out yet: its
                // position is not recorded before it is.
                self.held = Some(next);
                return Some(Ok(ChildFrame::Event { event: placed }));
            }
        }
        self.handed_out();
        next.map(|r| r.map_err(LinkError::Pool))
    }

    fn is_closed(&mut self) -> bool {
        self.reader.is_done()
    }

    fn checkpoint(&self) -> Option<Arc<dyn Checkpoint>> {
        lock(&self.journal).as_ref()?;
        Some(Arc::new(RunCheckpoint(self.journal.clone())))
    }
}

/// The pump's handle on a pool run's record.
struct RunCheckpoint(Arc<Mutex<Option<Checkpoints>>>);

impl Checkpoint for RunCheckpoint {
    fn bind(&self, child_id: &str) {
        if let Some(j) = lock(&self.0).as_mut() {
            j.rec.child_id = child_id.to_owned();
        }
    }

    fn every(&self) -> Duration {
        CHECKPOINT_EVERY
    }

    fn due(&self, quiet: bool) -> bool {
        lock(&self.0).as_ref().is_some_and(|j| j.due(quiet))
    }

    fn record(&self) {
        if let Some(j) = lock(&self.0).as_mut() {
            let at = j.handed_out;
            j.record(at);
        }
    }
}
