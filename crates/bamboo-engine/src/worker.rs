//! The engine's view of a worker process and its connection, as traits, so the
//! spawn core does not care whether workers are real processes (the default
//! [`crate::fleet_launcher`]) or in-process fakes in tests.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::ProvisionSpec;

/// A connection-level failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("worker connection failed: {0}")]
pub struct LinkError(pub String);

/// Starting a worker failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("could not start a worker: {0}")]
pub struct LaunchError(pub String);

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
    /// (between runs, so a pooled worker's dead connection is replaced before
    /// a run is sent down it). The default knows nothing: `false`.
    fn is_closed(&mut self) -> bool {
        false
    }

    /// Called by the pump before it sends the run, with the child's session
    /// id and a function that writes every event published so far to the
    /// event logs' files. A link that records how far it read (a pool run,
    /// so a restarted engine can continue) calls it before each record. The
    /// default ignores both.
    fn bind_run(&mut self, _child_id: &str, _write_logs: LogWriter) {}
}

/// See [`FrameRx::bind_run`].
pub type LogWriter = Arc<dyn Fn() + Send + Sync>;

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

/// One worker (usually a process).
#[async_trait]
pub trait ActorWorker: Send + Sync + fmt::Debug {
    /// OS process id, when there is a process.
    fn pid(&self) -> Option<u32>;
    /// Non-blocking liveness check.
    fn is_alive(&mut self) -> bool;
    /// Opens a connection.
    async fn connect(&self) -> Result<Link, LinkError>;
    /// Kills the worker and reaps it.
    async fn kill(&mut self);
}

/// Starts workers from provision specs.
#[async_trait]
pub trait WorkerLauncher: Send + Sync + fmt::Debug {
    /// Starts one worker provisioned with `spec` and waits until it is reachable.
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError>;

    /// Waits until a run for `spec` may use a worker (a per-endpoint cap);
    /// the run holds what this returns until it ends. Taken before the pool
    /// is asked, so a parked worker freed meanwhile is reused, not doubled.
    /// Default: no cap.
    async fn admit(&self, _spec: &ProvisionSpec) -> Option<Admission> {
        None
    }
}

/// A run's admission under a launcher's cap; dropping it gives it back.
pub type Admission = Box<dyn std::any::Any + Send + Sync>;
