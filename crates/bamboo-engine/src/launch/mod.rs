//! The launch layer: where a run's worker comes from. The spawn core asks
//! one router (`PlacementLauncher`, here) for a worker for a spec; the
//! router matches on the spec's placement, for admission (a per-endpoint
//! cap), the launch, the `placed` announcement and resumption, and hands the
//! spec to that placement's launcher (the traits are in `launcher.rs`):
//!
//! - `local.rs`: worker processes on this machine (or any [`Launcher`] the
//!   application gives the builder);
//! - `remote.rs`: a resident worker that is already running, under the
//!   endpoint's connection cap;
//! - `pool/`: a worker pool on NATS JetStream, with its journal of runs in
//!   flight, so a restarted engine reattaches to them.
//!
//! A placement whose runs outlive the engine says so through the router
//! (`PlacementLauncher::in_flight`, `PlacementLauncher::resume`): start-up
//! recovery and the spawn path name no placement. The engine's routing
//! (role → placement, else a default, else local; or the create call
//! decides) is here too. Adding a placement touches its own file(s), this
//! file (its module, an arm in each match, a [`PlacementError`] if it can be
//! unconfigured) and the builder.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bamboo_domain::{AgentEvent, Session};
use bamboo_subagent::spec::{Placement, ProvisionSpec};

mod launcher;
mod local;
mod pool;
mod remote;

pub(crate) use launcher::Admission;
#[cfg(test)]
pub(crate) use launcher::NoWorkers;
pub use launcher::{
    Checkpoint, FrameRx, FrameTx, LaunchError, Launcher, Link, LinkError, Unreachable, Worker,
};
pub use local::LocalLauncher;
pub(crate) use local::{link_of, PoolOnly};
pub(crate) use pool::PoolJournal;
use pool::{PoolLauncher, PoolRunRecord};
pub use remote::RemoteEndpoint;
pub(crate) use remote::RemoteLauncher;

/// Metadata key of a child's placement chosen at create time (JSON of
/// [`Placement`]). It holds no secret: the endpoint's token stays in the
/// engine's configuration.
pub const PLACEMENT_KEY: &str = "placement";

/// A placement the engine cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No resident worker is configured at the endpoint.
    #[error("no resident worker is configured at {endpoint}: add it to the engine (EngineBuilder::remote_worker) with its token")]
    NoRemote {
        /// The endpoint asked for.
        endpoint: String,
    },
    /// The engine has no worker pool on NATS.
    #[error("placement schedulable (pool {pool:?}) needs a worker pool on NATS: give the engine one with EngineBuilder::nats_pool (front door: --nats URL --pool NAME)")]
    NoPool {
        /// The pool asked for.
        pool: String,
    },
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
    pub fn check(&self, placement: &Placement) -> Result<(), PlacementError> {
        match placement {
            Placement::Local => Ok(()),
            Placement::Remote { endpoint } if self.remotes.contains_key(endpoint) => Ok(()),
            Placement::Remote { endpoint } => Err(PlacementError::NoRemote {
                endpoint: endpoint.clone(),
            }),
            Placement::Schedulable { .. } if self.pools => Ok(()),
            Placement::Schedulable { pool } => Err(PlacementError::NoPool { pool: pool.clone() }),
        }
    }
}

/// Dispatches each run to the launcher of its spec's placement: admission
/// (a per-endpoint cap), launch, and the resumption of runs a previous
/// engine started.
#[derive(Debug)]
pub(crate) struct PlacementLauncher {
    local: Arc<dyn Launcher>,
    remote: RemoteLauncher,
    pool: Option<PoolLauncher>,
    /// The pool's runs in flight; read even without a pool client, so a
    /// run this engine cannot reach is reported and dropped.
    journal: Arc<PoolJournal>,
}

/// A run a previous engine started on a placement where runs outlive the
/// engine; this engine may read it on.
#[derive(Debug)]
pub(crate) struct Resumable {
    /// The child the run is for.
    pub child_id: String,
    run: InFlight,
}

/// The placement-specific record of a [`Resumable`] run.
#[derive(Debug)]
enum InFlight {
    Pool(PoolRunRecord),
}

impl fmt::Display for Resumable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.run {
            InFlight::Pool(rec) => write!(f, "pool run {}", rec.run_id),
        }
    }
}

impl PlacementLauncher {
    /// Routes `local` placements to `local`, `remote` ones to `remote`'s
    /// endpoints and `schedulable` ones to `pool` (when the engine has one),
    /// which records its runs in `journal`.
    pub fn new(
        local: Arc<dyn Launcher>,
        remote: RemoteLauncher,
        pool: Option<bamboo_pool::PoolClient>,
        journal: Arc<PoolJournal>,
    ) -> Self {
        let pool = pool.map(|client| PoolLauncher::new(client).with_journal(journal.clone()));
        Self {
            local,
            remote,
            pool,
            journal,
        }
    }

    /// Waits until a run for `spec` may use a worker (a per-endpoint cap);
    /// the run holds what this returns until it ends. Taken before the warm
    /// pool is asked, so a parked worker freed meanwhile is reused, not
    /// doubled.
    pub async fn admit(&self, spec: &ProvisionSpec) -> Option<Admission> {
        match &spec.placement {
            Placement::Local => None,
            Placement::Remote { endpoint } => self.remote.admit(endpoint).await,
            Placement::Schedulable { .. } => None,
        }
    }

    /// Whether a launch for `spec` may wait on the placement's capacity, so
    /// a connection parked meanwhile must be able to serve the run instead
    /// (a resident worker answers "busy" while this engine's parked
    /// connections hold its run slots).
    pub fn waits_for_capacity(spec: &ProvisionSpec) -> bool {
        match &spec.placement {
            Placement::Local => false,
            Placement::Remote { .. } => true,
            Placement::Schedulable { .. } => false,
        }
    }

    /// Where a leased run runs, for the parent's stream; `None` for a pool
    /// run, whose link says so once a pool worker takes it.
    pub fn placed(placement: &Placement, pid: Option<u32>) -> Option<AgentEvent> {
        let (placement, worker) = match placement {
            Placement::Local => (
                "local",
                pid.map_or_else(|| "local".to_owned(), |p| format!("pid {p}")),
            ),
            Placement::Remote { endpoint } => ("remote", endpoint.clone()),
            Placement::Schedulable { .. } => return None,
        };
        Some(AgentEvent::Placed {
            placement: placement.to_owned(),
            worker,
            host: None,
        })
    }

    /// Every run a previous engine started and did not see end, on the
    /// placements whose runs outlive the engine.
    pub fn in_flight(&self) -> Vec<Resumable> {
        self.journal
            .load_all()
            .into_iter()
            .map(|rec| Resumable {
                child_id: rec.child_id.clone(),
                run: InFlight::Pool(rec),
            })
            .collect()
    }

    /// Whether this engine can read `run` on; why not when it cannot.
    pub fn can_resume(&self, run: &Resumable) -> Result<(), PlacementError> {
        match &run.run {
            InFlight::Pool(_) if self.pool.is_some() => Ok(()),
            InFlight::Pool(rec) => Err(PlacementError::NoPool {
                pool: rec.pool.clone(),
            }),
        }
    }

    /// Drops the record of `run` (its child is no longer running, or this
    /// engine cannot reach it).
    pub fn forget(&self, run: &Resumable) {
        match &run.run {
            InFlight::Pool(rec) => self.journal.remove(&rec.child_id),
        }
    }

    /// The worker of `run`, read on from where the previous engine left it.
    pub async fn resume(&self, run: Resumable) -> Result<Box<dyn Worker>, LaunchError> {
        match run.run {
            InFlight::Pool(rec) => match &self.pool {
                Some(pool) => pool.reattach(rec).await,
                None => Err(PlacementError::NoPool { pool: rec.pool }.into()),
            },
        }
    }
}

#[async_trait]
impl Launcher for PlacementLauncher {
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        match &spec.placement {
            Placement::Local => self.local.launch(spec).await,
            Placement::Remote { endpoint } => self.remote.reach(endpoint).await,
            Placement::Schedulable { pool } => match &self.pool {
                Some(launcher) => launcher.launch(spec).await,
                None => Err(PlacementError::NoPool { pool: pool.clone() }.into()),
            },
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
            .to_string()
            .contains("no resident worker is configured at wss://a:1"));
    }

    /// Stands for the local launcher: says it was asked.
    #[derive(Debug)]
    struct Local;

    #[async_trait]
    impl Launcher for Local {
        async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
            Err(LaunchError::Other("local".into()))
        }
    }

    fn spec(placement: Placement) -> ProvisionSpec {
        let mut s = ProvisionSpec::new("w", bamboo_subagent::spec::ExecutorSpec::Echo, "/f");
        s.placement = placement;
        s
    }

    #[tokio::test]
    async fn placements_route_to_their_launcher_and_unserved_ones_say_what_to_configure() {
        let dir = tempfile::tempdir().unwrap();
        let router = PlacementLauncher::new(
            Arc::new(Local),
            RemoteLauncher::default(),
            None,
            Arc::new(PoolJournal::new(dir.path())),
        );
        let err = router.launch(&spec(Placement::Local)).await.unwrap_err();
        assert!(err.to_string().ends_with(": local"), "{err}");
        let pool = Placement::Schedulable { pool: "gpu".into() };
        let err = router.launch(&spec(pool)).await.unwrap_err().to_string();
        assert!(
            err.contains("\"gpu\"") && err.contains("nats_pool"),
            "{err}"
        );
        let remote = Placement::Remote {
            endpoint: "wss://x:1".into(),
        };
        let err = router.launch(&spec(remote)).await.unwrap_err().to_string();
        assert!(
            err.contains("no resident worker is configured at wss://x:1"),
            "{err}"
        );
        let err = PoolOnly.launch(&spec(Placement::Local)).await.unwrap_err();
        assert!(err.to_string().contains("NATS pools only"), "{err}");
    }
}
