//! The default [`WorkerLauncher`]: real worker processes through
//! `bamboo_subagent::fleet`, connected over the WebSocket transport with the
//! engine's link bounds and keepalive. A fresh worker whose handshake times
//! out is replaced once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_subagent::fleet::{spawn_worker, WorkerCommand, WorkerHandle};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::ProvisionSpec;
use bamboo_subagent::transport::client::{ClientOptions, Connection, FrameReceiver, FrameSender};
use bamboo_subagent::transport::TransportError;

use crate::config::Timeouts;
use crate::worker::{ActorWorker, FrameRx, FrameTx, LaunchError, Link, LinkError, WorkerLauncher};

/// Starts local worker processes with a fixed command line.
#[derive(Debug, Clone)]
pub struct FleetLauncher {
    command: WorkerCommand,
    register_timeout: Duration,
    link: ClientOptions,
}

impl FleetLauncher {
    /// A launcher for `command`, waiting up to `register_timeout` per worker,
    /// with the default link bounds and keepalive.
    pub fn new(command: WorkerCommand, register_timeout: Duration) -> Self {
        Self {
            command,
            register_timeout,
            link: ClientOptions::default(),
        }
    }

    /// A launcher for `command` bounded by `timeouts`: registration, TCP
    /// connect, handshake and link keepalive.
    pub fn with_timeouts(command: WorkerCommand, timeouts: &Timeouts) -> Self {
        let link = timeouts.link_options();
        Self {
            command,
            register_timeout: timeouts.register,
            link,
        }
    }

    /// Spawns one worker and opens its first connection.
    async fn start_one(&self, spec: &ProvisionSpec) -> Result<FleetWorker, Started> {
        let mut handle = spawn_worker(&self.command, spec, self.register_timeout)
            .await
            .map_err(|e| {
                Started::Failed(LaunchError(format!(
                    "{e}; check the worker program path and its stderr"
                )))
            })?;
        match handle.connect_with(&self.link).await {
            Ok(conn) => Ok(FleetWorker {
                handle,
                first: Mutex::new(Some(conn)),
                link: self.link.clone(),
            }),
            Err(e) => {
                let tail = handle.stderr_tail();
                handle.kill().await;
                Err(match e {
                    TransportError::Timeout { .. } => Started::TimedOut(format!("{e}{tail}")),
                    other => Started::Failed(LaunchError(format!(
                        "new worker unreachable: {other}{tail}"
                    ))),
                })
            }
        }
    }
}

/// Why one start attempt failed.
enum Started {
    /// The handshake (or TCP connect) passed its bound: worth one fresh try.
    TimedOut(String),
    /// Anything else: final.
    Failed(LaunchError),
}

#[async_trait]
impl WorkerLauncher for FleetLauncher {
    /// Spawns a worker and connects to it. A worker whose connect or
    /// handshake times out is killed and replaced once by a fresh one; a
    /// second timeout fails with the bound and the endpoint.
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
        let first = match self.start_one(spec).await {
            Ok(w) => return Ok(Box::new(w)),
            Err(Started::Failed(e)) => return Err(e),
            Err(Started::TimedOut(why)) => why,
        };
        tracing::warn!(error = %first, "new worker timed out; retrying once on a fresh worker");
        match self.start_one(spec).await {
            Ok(w) => Ok(Box::new(w)),
            Err(Started::Failed(e)) => Err(e),
            Err(Started::TimedOut(why)) => Err(LaunchError(format!(
                "{why}; a first fresh worker timed out the same way ({first})"
            ))),
        }
    }
}

/// A worker process; its first connection, opened at launch, is handed out
/// by the first `connect`.
#[derive(Debug)]
struct FleetWorker {
    handle: WorkerHandle,
    first: Mutex<Option<Connection>>,
    link: ClientOptions,
}

#[async_trait]
impl ActorWorker for FleetWorker {
    fn pid(&self) -> Option<u32> {
        self.handle.pid()
    }

    fn is_alive(&mut self) -> bool {
        self.handle.is_alive()
    }

    async fn connect(&self) -> Result<Link, LinkError> {
        let opened = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        let conn = match opened {
            Some(conn) => conn,
            None => self
                .handle
                .connect_with(&self.link)
                .await
                .map_err(|e| LinkError(e.to_string()))?,
        };
        Ok(link_of(conn))
    }

    async fn kill(&mut self) {
        self.handle.kill().await;
    }
}

/// The engine's view of a transport connection.
pub(crate) fn link_of(conn: Connection) -> Link {
    Link {
        tx: Arc::new(Tx(conn.sender)),
        rx: Box::new(Rx(conn.receiver)),
    }
}

struct Tx(FrameSender);

#[async_trait]
impl FrameTx for Tx {
    async fn send(&self, frame: ParentFrame) -> Result<(), LinkError> {
        self.0
            .send(frame)
            .await
            .map_err(|e| LinkError(e.to_string()))
    }
}

struct Rx(FrameReceiver);

#[async_trait]
impl FrameRx for Rx {
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>> {
        self.0
            .recv()
            .await
            .map(|r| r.map_err(|e| LinkError(e.to_string())))
    }

    fn try_recv(&mut self) -> Option<ChildFrame> {
        self.0.try_recv()
    }

    fn is_closed(&mut self) -> bool {
        self.0.is_closed()
    }
}
