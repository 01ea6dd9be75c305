//! Where a child runs (issue 10): the engine's routing (role → placement,
//! else a default, else local) or the create call decides, and one launcher
//! per placement starts or reaches its workers behind the one
//! [`WorkerLauncher`] trait. A new placement plugs in here: a variant of
//! `Placement`, a launcher for it, and one arm in [`PlacementLauncher`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bamboo_domain::Session;
use bamboo_subagent::spec::{Placement, ProvisionSpec};
use bamboo_subagent::Secret;

use crate::remote_launcher::RemoteLauncher;
use crate::worker::{ActorWorker, LaunchError, WorkerLauncher};

/// Metadata key of a child's placement chosen at create time (JSON of
/// [`Placement`]). It holds no secret: the endpoint's token stays in the
/// engine's configuration.
pub const PLACEMENT_KEY: &str = "placement";

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

/// The engine's placement routing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routing {
    /// Placement by role.
    pub routes: HashMap<String, Placement>,
    /// Placement of roles without a route.
    pub default: Placement,
    /// Configured resident workers, by endpoint.
    pub remotes: HashMap<String, RemoteEndpoint>,
    /// Whether a worker pool on NATS takes `schedulable` runs
    /// (`EngineBuilder::nats_pool`).
    pub pools: bool,
}

impl Routing {
    /// The placement of `child`: chosen at create time, else routed by role,
    /// else the default.
    pub fn placement_of(&self, child: &Session) -> Placement {
        if let Some(p) = child
            .metadata
            .get(PLACEMENT_KEY)
            .and_then(|v| serde_json::from_value::<Placement>(v.clone()).ok())
        {
            return p;
        }
        let role = child.child.as_ref().map(|c| c.role.as_str()).unwrap_or("");
        self.routes
            .get(role)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }

    /// Whether the engine can serve `placement`; the reason when not.
    pub fn check(&self, placement: &Placement) -> Result<(), String> {
        match placement {
            Placement::Local => Ok(()),
            Placement::Remote { endpoint } if self.remotes.contains_key(endpoint) => Ok(()),
            Placement::Remote { endpoint } => Err(format!(
                "no resident worker is configured at {endpoint}: add it to the engine (EngineBuilder::remote_worker) with its token"
            )),
            Placement::Schedulable { .. } if self.pools => Ok(()),
            Placement::Schedulable { pool } => Err(format!(
                "placement schedulable (pool {pool:?}) needs a worker pool on NATS: give the engine one with EngineBuilder::nats_pool"
            )),
        }
    }
}

/// Dispatches each launch to the launcher of the spec's placement.
#[derive(Debug)]
pub(crate) struct PlacementLauncher {
    local: Arc<dyn WorkerLauncher>,
    remote: RemoteLauncher,
}

impl PlacementLauncher {
    pub fn new(local: Arc<dyn WorkerLauncher>, remote: RemoteLauncher) -> Self {
        Self { local, remote }
    }
}

#[async_trait]
impl WorkerLauncher for PlacementLauncher {
    async fn admit(&self, spec: &ProvisionSpec) -> Option<crate::worker::Admission> {
        match &spec.placement {
            Placement::Remote { endpoint } => self.remote.admit(endpoint).await,
            _ => self.local.admit(spec).await,
        }
    }

    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn ActorWorker>, LaunchError> {
        match &spec.placement {
            Placement::Local => self.local.launch(spec).await,
            Placement::Remote { endpoint } => self.remote.reach(endpoint).await,
            Placement::Schedulable { pool } => Err(LaunchError(format!(
                "placement schedulable (pool {pool:?}) is not supported; use local or remote"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::ChildInfo;

    #[test]
    fn create_time_placement_beats_the_role_route_which_beats_the_default() {
        let remote = |e: &str| Placement::Remote { endpoint: e.into() };
        let mut r = Routing::default();
        r.routes.insert("coder".into(), remote("wss://a:1"));
        let root = Session::new_root("p");
        let mut c = Session::new_child(&root, ChildInfo::new("coder", "x"));
        assert_eq!(r.placement_of(&c), remote("wss://a:1"));
        c.metadata.insert(
            PLACEMENT_KEY.into(),
            serde_json::to_value(remote("wss://b:2")).unwrap(),
        );
        assert_eq!(r.placement_of(&c), remote("wss://b:2"));
        let other = Session::new_child(&root, ChildInfo::new("writer", "x"));
        assert_eq!(r.placement_of(&other), Placement::Local);
        assert!(r
            .check(&remote("wss://a:1"))
            .unwrap_err()
            .contains("no resident worker is configured at wss://a:1"));
    }
}
