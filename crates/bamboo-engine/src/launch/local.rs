//! The launcher of `Placement::Local`: real worker processes through
//! `bamboo_subagent::fleet`, connected over the WebSocket transport with the
//! engine's link bounds and keepalive. A fresh worker whose handshake times
//! out is replaced once. An engine built with a NATS pool and no worker
//! program has [`PoolOnly`] here instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_subagent::fleet::{spawn_worker, WorkerCommand, WorkerHandle};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::ProvisionSpec;
use bamboo_subagent::transport::client::{ClientOptions, Connection, FrameReceiver, FrameSender};

use super::{FrameRx, FrameTx, LaunchError, Launcher, Link, LinkError, Unreachable, Worker};
use crate::timeouts::Timeouts;

/// Starts local worker processes with a fixed command line.
#[derive(Debug, Clone)]
pub struct LocalLauncher {
    command: WorkerCommand,
    register_timeout: Duration,
    link: ClientOptions,
}

impl LocalLauncher {
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
    async fn start_one(&self, spec: &ProvisionSpec) -> Result<LocalWorker, Started> {
        let mut handle = spawn_worker(&self.command, spec, self.register_timeout)
            .await
            .map_err(|e| Started::Failed(LaunchError::Spawn(e)))?;
        match handle.connect_with(&self.link).await {
            Ok(conn) => Ok(LocalWorker {
                handle,
                first: Mutex::new(Some(conn)),
                link: self.link.clone(),
            }),
            Err(e) => {
                let failed = Unreachable {
                    source: e,
                    stderr: handle.stderr_tail().to_string(),
                };
                handle.kill().await;
                Err(if failed.timed_out() {
                    Started::TimedOut(failed)
                } else {
                    Started::Failed(LaunchError::Unreachable(failed))
                })
            }
        }
    }
}

/// Why one start attempt failed.
enum Started {
    /// The handshake (or TCP connect) passed its bound: worth one fresh try.
    TimedOut(Unreachable),
    /// Anything else: final.
    Failed(LaunchError),
}

#[async_trait]
impl Launcher for LocalLauncher {
    /// Spawns a worker and connects to it. A worker whose connect or
    /// handshake times out is killed and replaced once by a fresh one; a
    /// second timeout fails with the bound and the endpoint.
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        let first = match self.start_one(spec).await {
            Ok(w) => return Ok(Box::new(w)),
            Err(Started::Failed(e)) => return Err(e),
            Err(Started::TimedOut(why)) => why,
        };
        tracing::warn!(error = %first, "new worker timed out; retrying once on a fresh worker");
        match self.start_one(spec).await {
            Ok(w) => Ok(Box::new(w)),
            Err(Started::Failed(e)) => Err(e),
            Err(Started::TimedOut(second)) => Err(LaunchError::TimedOutTwice { first, second }),
        }
    }
}

/// A worker process; its first connection, opened at launch, is handed out
/// by the first `connect`.
#[derive(Debug)]
struct LocalWorker {
    handle: WorkerHandle,
    first: Mutex<Option<Connection>>,
    link: ClientOptions,
}

#[async_trait]
impl Worker for LocalWorker {
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
                .map_err(LinkError::Transport)?,
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
        Ok(self.0.send(frame).await?)
    }
}

struct Rx(FrameReceiver);

#[async_trait]
impl FrameRx for Rx {
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>> {
        self.0.recv().await.map(|r| r.map_err(LinkError::Transport))
    }

    fn try_recv(&mut self) -> Option<ChildFrame> {
        self.0.try_recv()
    }

    fn is_closed(&mut self) -> bool {
        self.0.is_closed()
    }
}

/// The local launcher of an engine built with a NATS pool and no worker
/// program: local placements fail with a clear error.
#[derive(Debug)]
pub(crate) struct PoolOnly;

#[async_trait]
impl Launcher for PoolOnly {
    async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        Err(LaunchError::PoolOnly)
    }
}
