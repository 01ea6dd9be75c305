//! The launcher of `Placement::Remote`: reaches a resident worker that is
//! already running instead of starting a process. The handle is a
//! record only (no pid, nothing to kill but the connection); it counts as
//! alive until retired, so the pool parks it between runs, and a parked
//! connection the worker closed is reopened to the same endpoint. A run is
//! never moved to another endpoint. A worker that answers "busy" (all its run
//! slots taken, HTTP 503) is asked again with a growing pause, up to the run
//! time cap, never failing the child for it.
// Behaviours: F11.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_subagent::transport::client::{connect_with, ClientOptions, Connection};
use bamboo_subagent::transport::TransportError;
use bamboo_subagent::Secret;
use tokio::sync::Semaphore;

use super::{link_of, Admission, LaunchError, Link, LinkError, PlacementError, Worker};
use crate::timeouts::Timeouts;

/// A resident worker the engine may send children to.
#[derive(Clone)]
pub struct RemoteEndpoint {
    /// The bearer token the worker requires. Held by the engine only: never
    /// written into a session, a log, a spec or the fabric.
    pub token: Secret,
    /// Extra trusted CA certificates (DER) for its `wss://` certificate.
    pub ca_certs: Vec<Vec<u8>>,
    /// At most this many runs on it at once, and so at most this many open
    /// connections; keep it at or below its `--max-runs`.
    pub max_connections: usize,
}

impl RemoteEndpoint {
    /// An endpoint with `token`, the public web roots only, and 4 connections.
    pub fn new(token: Secret) -> Self {
        Self {
            token,
            ca_certs: Vec::new(),
            max_connections: 4,
        }
    }
}

impl std::fmt::Debug for RemoteEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEndpoint")
            .field("token", &self.token)
            .field("ca_certs", &self.ca_certs.len())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// One configured endpoint: how to reach it, and its cap. A run takes a slot
/// (`admit`) before it asks the pool, and holds it until it ends; a parked
/// connection holds none, but a new one is opened only when none is parked,
/// so open connections never exceed the cap.
#[derive(Debug)]
struct Target {
    endpoint: String,
    token: Secret,
    link: ClientOptions,
    slots: Arc<Semaphore>,
    /// How long a busy worker is asked again before the run fails.
    busy_wait: Duration,
}

/// The first pause before asking a busy worker again; it doubles up to
/// [`BUSY_PAUSE_MAX`].
const BUSY_PAUSE_FIRST: Duration = Duration::from_millis(50);
/// The longest pause between two asks of a busy worker.
const BUSY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Reaches the configured resident workers.
#[derive(Debug, Default)]
pub(crate) struct RemoteLauncher {
    targets: HashMap<String, Arc<Target>>,
}

impl RemoteLauncher {
    /// A launcher for `remotes`, with the engine's link bounds and keepalive.
    pub fn new(remotes: &HashMap<String, RemoteEndpoint>, timeouts: &Timeouts) -> Self {
        let targets = remotes
            .iter()
            .map(|(endpoint, r)| {
                let link = ClientOptions {
                    extra_root_certs: r.ca_certs.clone(),
                    ..timeouts.link_options()
                };
                let target = Target {
                    endpoint: endpoint.clone(),
                    token: r.token.clone(),
                    link,
                    slots: Arc::new(Semaphore::new(r.max_connections.max(1))),
                    busy_wait: timeouts.run,
                };
                (endpoint.clone(), Arc::new(target))
            })
            .collect();
        Self { targets }
    }

    /// Waits for one of `endpoint`'s connection slots (held by the run).
    pub async fn admit(&self, endpoint: &str) -> Option<Admission> {
        let target = self.targets.get(endpoint)?;
        let permit = target.slots.clone().acquire_owned().await.ok()?;
        Some(Box::new(permit))
    }

    /// Opens a connection to the resident worker at `endpoint`.
    pub async fn reach(&self, endpoint: &str) -> Result<Box<dyn Worker>, LaunchError> {
        let target = self
            .targets
            .get(endpoint)
            .ok_or_else(|| PlacementError::NoRemote {
                endpoint: endpoint.to_owned(),
            })?;
        let conn = target.open().await.map_err(|source| LaunchError::Remote {
            endpoint: endpoint.to_owned(),
            source,
        })?;
        Ok(Box::new(RemoteWorker {
            target: target.clone(),
            first: Mutex::new(Some(conn)),
            retired: false,
        }))
    }
}

impl Target {
    async fn open(&self) -> Result<Connection, TransportError> {
        let give_up = tokio::time::Instant::now() + self.busy_wait;
        let mut pause = BUSY_PAUSE_FIRST;
        loop {
            match connect_with(&self.endpoint, Some(&self.token), &self.link).await {
                Ok(conn) => return Ok(conn),
                // Its runs end soon enough: a slot frees, and this run takes it.
                Err(TransportError::Busy { .. })
                    if tokio::time::Instant::now() + pause < give_up =>
                {
                    tracing::debug!(endpoint = %self.endpoint, ?pause, "resident worker busy; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BUSY_PAUSE_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A connection slot at a resident worker.
#[derive(Debug)]
struct RemoteWorker {
    target: Arc<Target>,
    first: Mutex<Option<Connection>>,
    retired: bool,
}

#[async_trait]
impl Worker for RemoteWorker {
    fn pid(&self) -> Option<u32> {
        None
    }

    /// Alive until retired: a resident worker's health shows on its link
    /// (keepalive, closed-connection checks), not in a process table.
    fn is_alive(&mut self) -> bool {
        !self.retired
    }

    async fn connect(&self) -> Result<Link, LinkError> {
        let opened = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        let conn = match opened {
            Some(conn) => conn,
            None => self
                .target
                .open()
                .await
                .map_err(|source| LinkError::Remote {
                    endpoint: self.target.endpoint.clone(),
                    source,
                })?,
        };
        Ok(link_of(conn))
    }

    /// Nothing to kill: drops the connection.
    async fn kill(&mut self) {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.retired = true;
    }
}
