//! The launcher traits: what the spawn core sees of a worker (a process, a
//! connection slot at a resident worker, a run on a pool) and its
//! connection, and how starting or reaching one fails.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bamboo_subagent::fleet::FleetError;
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::ProvisionSpec;
use bamboo_subagent::transport::TransportError;

use super::PlacementError;

/// A worker connection failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The WebSocket transport failed (closed, timed out, refused).
    #[error("worker connection failed: {0}")]
    Transport(#[from] TransportError),
    /// Reading or writing a pool run on NATS failed.
    #[error("worker connection failed: {0}")]
    Pool(#[from] bamboo_pool::PoolError),
    /// A resident worker could not be reached again.
    #[error("worker connection failed: resident worker {endpoint} unreachable: {source}")]
    Remote {
        /// The worker's endpoint.
        endpoint: String,
        /// Why.
        source: TransportError,
    },
    /// A pool run has one link; a second was asked for.
    #[error("worker connection failed: a pool run has exactly one link")]
    SecondPoolLink,
    /// An application's own link failed.
    #[error("worker connection failed: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Starting or reaching a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The worker program could not be started or did not register.
    #[error("could not start a worker: {0}; check the worker program path and its stderr")]
    Spawn(#[source] FleetError),
    /// A fresh worker started but its connection failed.
    #[error("could not start a worker: new worker unreachable: {0}")]
    Unreachable(#[source] Unreachable),
    /// A fresh worker's connect or handshake timed out, and so did the one
    /// that replaced it.
    #[error(
        "could not start a worker: {second}; a first fresh worker timed out the same way ({first})"
    )]
    TimedOutTwice {
        /// The first worker's failure.
        first: Unreachable,
        /// The replacement's failure.
        second: Unreachable,
    },
    /// A worker was started or reached but the connection to it failed.
    #[error("could not start a worker: new worker unreachable: {0}")]
    Connect(#[source] LinkError),
    /// The worker of a run a previous engine started could not be read on.
    #[error("could not start a worker: {0}")]
    Link(#[from] LinkError),
    /// A resident worker did not answer.
    #[error("could not start a worker: resident worker {endpoint} unreachable: {source}")]
    Remote {
        /// The worker's endpoint.
        endpoint: String,
        /// Why.
        source: TransportError,
    },
    /// The engine has no launcher for the placement.
    #[error("could not start a worker: {0}")]
    Placement(#[from] PlacementError),
    /// The engine runs children on NATS pools only.
    #[error("could not start a worker: this engine runs children on NATS pools only: place the child on a pool (metadata \"placement\") or configure worker_program")]
    PoolOnly,
    /// The NATS pool refused the run.
    #[error("could not start a worker: {0}")]
    Pool(#[from] bamboo_pool::PoolError),
    /// An application's own launcher failed.
    #[error("could not start a worker: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// A fresh worker's failed connection, with the last lines of its stderr.
#[derive(Debug, thiserror::Error)]
#[error("{source}{stderr}")]
pub struct Unreachable {
    /// Why the connection failed.
    pub source: TransportError,
    /// The worker's last stderr lines (empty, or starting with a separator).
    pub stderr: String,
}

impl Unreachable {
    /// Whether the connect or handshake passed its bound (worth one fresh try).
    pub fn timed_out(&self) -> bool {
        matches!(self.source, TransportError::Timeout { .. })
    }
}

/// Sends frames to a worker. Cloned freely (approval and spawn replies run on
/// their own tasks).
#[async_trait]
pub trait FrameTx: Send + Sync {
    /// Sends one frame.
    async fn send(&self, frame: ParentFrame) -> Result<(), LinkError>;
}

/// Receives a worker's frames in order.
#[async_trait]
pub trait FrameRx: Send {
    /// The next frame; `None` once the connection is closed.
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>>;

    /// The next frame if one has already arrived, without waiting; `None`
    /// when none has (or the connection ended: `recv` then says how). The
    /// pump drains a burst with it after each `recv`. The default never has
    /// one ready, so every frame goes through `recv`.
    fn try_recv(&mut self) -> Option<ChildFrame> {
        None
    }

    /// Whether the connection is known to be closed, checked without waiting
    /// (between runs, so a parked worker's dead connection is replaced before
    /// a run is sent down it). The default knows nothing: `false`.
    fn is_closed(&mut self) -> bool {
        false
    }

    /// Where the pump records how far it has read, for a run that outlives
    /// the engine (a pool run: a restarted engine continues from there).
    /// The default has none: nothing is recorded.
    fn checkpoint(&self) -> Option<Arc<dyn Checkpoint>> {
        None
    }
}

/// A run's read position, made durable by the pump: it asks whether a
/// record is due, makes the events of every frame handed out so far durable
/// in its own logs, then records.
pub trait Checkpoint: Send + Sync {
    /// Names the child the run is for, before the run is sent.
    fn bind(&self, child_id: &str);
    /// How often a quiet run's position is looked at.
    fn every(&self) -> Duration;
    /// Whether a record is due: frames were handed out since the last one
    /// and (unless `quiet`, when the run has been waiting a while) the last
    /// one is not recent.
    fn due(&self, quiet: bool) -> bool;
    /// Records that every frame handed out so far is in the event logs.
    fn record(&self);
}

/// An open connection to a worker.
pub struct Link {
    /// Sending half.
    pub tx: Arc<dyn FrameTx>,
    /// Receiving half.
    pub rx: Box<dyn FrameRx>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Link")
    }
}

/// One worker: a process, a connection slot at a resident worker, or a run
/// on a pool.
#[async_trait]
pub trait Worker: Send + Sync + fmt::Debug {
    /// OS process id, when there is a process.
    fn pid(&self) -> Option<u32>;
    /// Non-blocking liveness check.
    fn is_alive(&mut self) -> bool;
    /// Opens a connection.
    async fn connect(&self) -> Result<Link, LinkError>;
    /// Kills the worker and reaps it.
    async fn kill(&mut self);
}

/// Starts workers from provision specs: one placement's way of getting a
/// worker (an application may give the builder its own for local runs).
#[async_trait]
pub trait Launcher: Send + Sync + fmt::Debug {
    /// Starts one worker provisioned with `spec` and waits until it is reachable.
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError>;
}

/// A run's admission under a placement's cap; dropping it gives it back.
pub(crate) type Admission = Box<dyn std::any::Any + Send + Sync>;

/// A launcher that never has a worker, for unit tests where no run happens
/// (or every run must fail to start).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct NoWorkers;

#[cfg(test)]
#[async_trait::async_trait]
impl Launcher for NoWorkers {
    async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        Err(LaunchError::Other("no workers in this test".into()))
    }
}
