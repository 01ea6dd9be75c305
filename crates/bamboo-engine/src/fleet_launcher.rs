//! The default [`WorkerLauncher`]: real worker processes through
//! `bamboo_subagent::fleet`, connected over the WebSocket transport.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bamboo_subagent::fleet::{spawn_worker, WorkerCommand, WorkerHandle};
use bamboo_subagent::frames::{ChildFrame, ParentFrame};
use bamboo_subagent::spec::ProvisionSpec;
use bamboo_subagent::transport::client::{FrameReceiver, FrameSender};

use crate::worker::{ActorWorker, FrameRx, FrameTx, LaunchError, Link, LinkError, WorkerLauncher};

/// Starts local worker processes with a fixed command line.
#[derive(Debug, Clone)]
pub struct FleetLauncher {
    command: WorkerCommand,
    register_timeout: Duration,
}

impl FleetLauncher {
    /// A launcher for `command`, waiting up to `register_timeout` per worker.
    pub fn new(command: WorkerCommand, register_timeout: Duration) -> Self {
        Self {
            command,
            register_timeout,
        }
    }
}

#[async_trait]
impl WorkerLauncher for FleetLauncher {
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
        let handle = spawn_worker(&self.command, spec, self.register_timeout)
            .await
            .map_err(|e| LaunchError(e.to_string()))?;
        Ok(Box::new(FleetWorker(handle)))
    }
}

#[derive(Debug)]
struct FleetWorker(WorkerHandle);

#[async_trait]
impl ActorWorker for FleetWorker {
    fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    fn is_alive(&mut self) -> bool {
        self.0.is_alive()
    }

    async fn connect(&self) -> Result<Link, LinkError> {
        let conn = self
            .0
            .connect()
            .await
            .map_err(|e| LinkError(e.to_string()))?;
        Ok(Link {
            tx: Arc::new(Tx(conn.sender)),
            rx: Box::new(Rx(conn.receiver)),
        })
    }

    async fn kill(&mut self) {
        self.0.kill().await;
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

    fn is_closed(&mut self) -> bool {
        self.0.is_closed()
    }
}
