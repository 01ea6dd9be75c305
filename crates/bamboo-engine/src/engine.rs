//! The embedding entry point: [`Engine`], built once with [`EngineBuilder`] and
//! shared (it is a cheap `Clone`). Everything is an explicit handle: two
//! engines in one process share nothing.
// E21: no global state.
//!
//! The engine is a thin facade over the run path's [`RunPath`]: it turns
//! calls into runtime operations and injects itself, as a
//! [`crate::nested::NestedSpawner`], for children's nested spawn requests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::{ModelRef, Session};
use bamboo_subagent::fleet::WorkerCommand;
use bamboo_subagent::spec::{ExecutorSpec, Placement};
use bamboo_subagent::Secret;

use crate::api_nested::FacadeSpawner;
use crate::approval::{ApprovalPolicy, ApprovalStream, PendingApproval};
use crate::config::EngineConfig;
use crate::credentials::CredentialResolver;
use crate::error::EngineError;
use crate::events::{EventStream, Since};
use crate::launch::{
    Launcher, LocalLauncher, PlacementLauncher, PoolJournal, PoolOnly, RemoteEndpoint,
    RemoteLauncher,
};
use crate::run_path::RunPath;
use crate::scratch::Scratch;
use crate::store::{FileStore, SessionStore};
use crate::timeouts::Timeouts;
use crate::warm::WarmLimits;

/// Runs sub-agents as actor worker processes: create root sessions, spawn
/// children under them ([`Engine::spawn`]), follow their events, answer
/// their approval requests, and shut down. A cheap `Clone`: every clone is
/// the same engine. See the crate's front page for a complete program.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<RunPath>,
    /// The data directory of an ephemeral engine, removed at shutdown (or
    /// when the last handle is dropped).
    pub(crate) scratch: Option<Arc<Scratch>>,
}

/// Counters an application (or a test) can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Runs holding a slot now.
    pub running: usize,
    /// Most runs that ever held a slot at once.
    pub peak_running: usize,
    /// Worker processes started so far.
    pub workers_started: usize,
    /// Idle workers parked in the pool.
    pub idle_workers: usize,
    /// Runs queued or in flight.
    pub reserved: usize,
}

impl Engine {
    /// Starts configuring an engine. Give it a data directory
    /// ([`EngineBuilder::data_dir`]) or make it [`EngineBuilder::ephemeral`].
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            cfg: EngineConfig::new(PathBuf::new()),
            ephemeral: false,
            worker: None,
            launcher: None,
            store: None,
            pool_set: false,
            nats_pool: None,
        }
    }

    /// Creates a root session (a parent for children).
    pub async fn create_root(
        &self,
        title: &str,
        model: Option<ModelRef>,
    ) -> Result<Session, EngineError> {
        let mut s = Session::new_root(title);
        s.model = model;
        self.inner.store.create(&s).await?;
        Ok(s)
    }

    /// Loads any session.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, EngineError> {
        Ok(self.inner.store.load(id).await?)
    }

    /// A session's events, live and lossless: every event of every run
    /// of its descendants (children, grandchildren, ...), in order, each with
    /// the log's sequence number, with no gap and no duplicate. A reader that
    /// falls behind continues from the session's log file; a child is never
    /// slowed by a reader. The stream ends when the session is deleted or the
    /// engine shuts down.
    pub fn events(&self, session_id: &str, since: Since) -> EventStream {
        self.inner.events.subscribe(session_id, since, false)
    }

    /// Like [`Engine::events`], but ends at the last event logged at the time
    /// of the call: the history so far.
    pub fn logged_events(&self, session_id: &str, since: Since) -> EventStream {
        self.inner.events.subscribe(session_id, since, true)
    }

    /// Answers a pending approval by the `request_id` of its
    /// `child_approval_requested` event. A request that is no longer
    /// open gives [`EngineError::Approval`] saying why (expired, answered,
    /// withdrawn, unknown): not fatal, the child has its answer already.
    pub fn answer_approval(&self, request_id: &str, approved: bool) -> Result<(), EngineError> {
        Ok(self.inner.approvals.answer(request_id, approved)?)
    }

    /// Approval requests waiting for a human: all, or those of descendants
    /// of `under`. Oldest first.
    pub fn pending_approvals(&self, under: Option<&str>) -> Vec<PendingApproval> {
        self.inner.approvals.pending(under)
    }

    /// Approval requests as a lossless stream: every request open now, then
    /// each new one (all, or those of descendants of `under`: a grandchild's
    /// request reaches its root's watchers). Ends at shutdown.
    pub fn approval_requests(&self, under: Option<&str>) -> ApprovalStream {
        self.inner.approvals.watch(under)
    }

    /// Where the engine keeps its data (for an ephemeral engine, its
    /// temporary directory until shutdown).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.cfg.data_dir
    }

    /// Current counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: self.inner.slots.running(),
            peak_running: self.inner.slots.peak(),
            workers_started: self.inner.leases.started(),
            idle_workers: self.inner.leases.idle(),
            reserved: self.inner.reservations.count(),
        }
    }

    /// Cancels every run, waits for them to report, and retires every worker:
    /// no worker process outlives this call. New runs are refused afterwards.
    /// An ephemeral engine's data directory is removed.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
        if let Some(scratch) = &self.scratch {
            scratch.remove();
        }
    }
}

/// Configures an [`Engine`]. Only a data directory (or
/// [`ephemeral`](Self::ephemeral)) is required; the worker program is found
/// when not given (see [`worker_program`](Self::worker_program)).
#[derive(Debug)]
pub struct EngineBuilder {
    cfg: EngineConfig,
    ephemeral: bool,
    worker: Option<WorkerCommand>,
    launcher: Option<Arc<dyn Launcher>>,
    store: Option<Arc<dyn SessionStore>>,
    pool_set: bool,
    nats_pool: Option<bamboo_pool::PoolClient>,
}

impl EngineBuilder {
    /// Where the engine keeps its sessions, event logs and worker records
    /// (created if missing). Another engine started later on the same
    /// directory picks up where this one left off.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.data_dir = dir.into();
        self.ephemeral = false;
        self
    }

    /// Keeps the engine's data in a private temporary directory, removed at
    /// [`Engine::shutdown`] (or, best effort, when the last handle on the
    /// engine is dropped without one): for a throwaway run.
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// The worker program (started with fixed arguments only). Without
    /// one, the engine looks for `bamboo-worker`: the path in the
    /// `BAMBOO_WORKER_BIN` environment variable; else next to the running
    /// program or in its parent directory (where cargo puts examples and
    /// tests); else, when cargo runs the program, in the workspace's
    /// `target` directory; else on `PATH`.
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        let args = self.worker.take().map(|w| w.args).unwrap_or_default();
        self.worker = Some(WorkerCommand {
            program: program.into(),
            args,
        });
        self
    }

    /// Fixed arguments for every worker.
    pub fn worker_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        let program = self.worker.take().map(|w| w.program).unwrap_or_default();
        self.worker = Some(WorkerCommand {
            program,
            args: args.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// At most `n` children run at once (default 8); more wait for a slot.
    pub fn max_running(mut self, n: usize) -> Self {
        self.cfg.max_running = n.max(1);
        self
    }

    /// How many idle workers are kept warm for reuse (default 4 per kind
    /// of worker, 32 in total, each raised to `max_running` when that is
    /// larger).
    // Behaviours: E11.
    pub fn warm_limits(mut self, limits: WarmLimits) -> Self {
        self.cfg.warm = limits;
        self.pool_set = true;
        self
    }

    /// An automatic approval decider, consulted before any human.
    pub fn approval_policy(mut self, policy: Arc<dyn ApprovalPolicy>) -> Self {
        self.cfg.approvals.policy = Some(policy);
        self
    }

    /// Whether humans answer approvals through [`Engine::answer_approval`]
    /// (default true). With no policy and no human, every request is denied.
    pub fn human_approvals(mut self, enabled: bool) -> Self {
        self.cfg.approvals.human = enabled;
        self
    }

    /// The reviewer that answers a descendant's approval on behalf of a
    /// bypassed session below the root (approvals up the chain). Without
    /// one, every request climbs to the root's policy or human.
    pub fn child_approval_reviewer(
        mut self,
        reviewer: Arc<dyn crate::escalation::ChildApprovalReviewer>,
    ) -> Self {
        self.cfg.approvals.reviewer = Some(reviewer);
        self
    }

    /// How long an approval may wait before it is denied (default 300 s).
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.approvals.timeout = timeout;
        self
    }

    /// Time limits (watchdog, registration, cancel grace, heartbeat).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.cfg.timeouts = timeouts;
        self
    }

    /// Which executor workers run (default `bamboo_runtime`).
    pub fn executor(mut self, executor: ExecutorSpec) -> Self {
        self.cfg.executor = executor;
        self
    }

    /// Supplies per-provider credentials (each child gets only its own
    /// provider's key).
    pub fn credentials(mut self, resolver: Arc<dyn CredentialResolver>) -> Self {
        self.cfg.credentials = Some(resolver);
        self
    }

    /// How deep children may spawn children of their own (default 4).
    pub fn max_spawn_depth(mut self, cap: u32) -> Self {
        self.cfg.max_spawn_depth = cap;
        self
    }

    /// Events of each session's log kept in memory for live readers
    /// (default 4096); readers further behind read the log file.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.cfg.event_log.ring_events = n;
        self
    }

    /// Largest event log file per session (default 1 GiB). Events past it
    /// are not logged; readers that need them get an `events_truncated`
    /// event naming the lost sequence numbers.
    pub fn event_log_cap(mut self, bytes: u64) -> Self {
        self.cfg.event_log.cap_bytes = bytes;
        self
    }

    /// The system prompt of children with `role`.
    pub fn role_prompt(mut self, role: impl Into<String>, prompt: impl Into<String>) -> Self {
        self.cfg.role_prompts.insert(role.into(), prompt.into());
        self
    }

    /// Whether workers gate actions (a cli program's start, an llm child's
    /// writes and commands, nested spawns) behind approvals. Default: on
    /// (fail closed); turning it off is an explicit opt-out.
    pub fn enforce_permissions(mut self, on: bool) -> Self {
        self.cfg.enforce_permissions = on;
        self
    }

    /// A resident worker children may be placed on (`Placement::Remote`
    /// with this `endpoint`, e.g. `wss://host:7300`), with its token, CA
    /// certificates and connection cap.
    pub fn remote_worker(mut self, endpoint: impl Into<String>, remote: RemoteEndpoint) -> Self {
        self.cfg.routing.remotes.insert(endpoint.into(), remote);
        self
    }

    /// Children with `role` run at `placement` unless their create call says
    /// otherwise.
    pub fn route(mut self, role: impl Into<String>, placement: Placement) -> Self {
        self.cfg.routing.routes.insert(role.into(), placement);
        self
    }

    /// Where children without a route or a create-time placement run
    /// (default: local).
    pub fn default_placement(mut self, placement: Placement) -> Self {
        self.cfg.routing.default = placement;
        self
    }

    /// Passes the variable `name` with `value` on purpose into the environment
    /// of every `cli_adapter` program, after the secret scrub (repeatable). It
    /// travels in the spec's secrets envelope, never in argv or a worker's env.
    pub fn pass_env(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.cfg.pass_env.insert(name.into(), value);
        self
    }

    /// Starts local workers some other way (tests, custom fleets).
    pub fn launcher(mut self, launcher: Arc<dyn Launcher>) -> Self {
        self.launcher = Some(launcher);
        self
    }

    /// Runs placed `schedulable` go to worker pools on NATS through
    /// `client`; see [`crate::launch`].
    pub fn nats_pool(mut self, client: bamboo_pool::PoolClient) -> Self {
        self.nats_pool = Some(client);
        self.cfg.routing.pools = true;
        self
    }

    /// Keeps sessions somewhere else than the file store.
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Opens the store, recovers children orphaned by a previous engine, and
    /// returns the engine.
    pub async fn build(self) -> Result<Engine, EngineError> {
        let mut cfg = self.cfg;
        let scratch = match self.ephemeral {
            true => {
                let (scratch, dir) = Scratch::create()?;
                cfg.data_dir = dir;
                Some(Arc::new(scratch))
            }
            false if cfg.data_dir.as_os_str().is_empty() => {
                return Err(EngineError::Config(
                    "no data directory: call data_dir(path) on the builder, or ephemeral() for a temporary one".into(),
                ))
            }
            false => None,
        };
        // Without a program, a launcher or a NATS pool, find the worker.
        let worker = match self.worker {
            Some(w) if !w.program.as_os_str().is_empty() => Some(w),
            w if self.launcher.is_none() && self.nats_pool.is_none() => Some(WorkerCommand {
                program: crate::discover::worker_program()
                    .map_err(|e| EngineError::Config(e.to_string()))?,
                args: w.map(|w| w.args).unwrap_or_default(),
            }),
            w => w,
        };
        if !self.pool_set {
            // A burst at the running limit ends with `max_running` clean workers
            // of one fingerprint; a smaller idle cap would retire some only to
            // spawn replacements for the next burst.
            cfg.warm.max_idle_per_key = cfg.warm.max_idle_per_key.max(cfg.max_running);
            cfg.warm.max_idle_total = cfg.warm.max_idle_total.max(cfg.max_running);
        }
        let local: Arc<dyn Launcher> = match (self.launcher, worker) {
            (Some(l), _) => l,
            (None, Some(cmd)) if !cmd.program.as_os_str().is_empty() => {
                Arc::new(LocalLauncher::with_timeouts(cmd, &cfg.timeouts))
            }
            // A pool-only engine needs no local worker program.
            _ if self.nats_pool.is_some() => Arc::new(PoolOnly),
            _ => {
                return Err(EngineError::Config(
                    "no worker program: call worker_program(path) on the builder".into(),
                ))
            }
        };
        let routing = &cfg.routing;
        for p in routing.routes.values().chain([&routing.default]) {
            routing
                .check(p)
                .map_err(|e| EngineError::Config(e.to_string()))?;
        }
        let launcher = Arc::new(PlacementLauncher::new(
            local,
            RemoteLauncher::new(&cfg.routing.remotes, &cfg.timeouts),
            self.nats_pool,
            Arc::new(PoolJournal::new(&cfg.data_dir)),
        ));
        let store: Arc<dyn SessionStore> = match self.store {
            Some(s) => s,
            None => Arc::new(FileStore::open(&cfg.data_dir).await?),
        };
        let store = Arc::new(crate::store::Deferred::new(store));
        let resumable = crate::recovery::resumable_runs(store.as_ref(), &launcher).await;
        let keep = resumable.iter().map(|(r, _)| r.child_id.clone()).collect();
        crate::recovery::mark_orphans(&store, &keep).await?;
        crate::recovery::recover_inboxes(&cfg.data_dir.join("inbox"));
        let inner = RunPath::new(cfg, store, launcher, |weak| Arc::new(FacadeSpawner(weak)));
        for (run, parent) in resumable {
            // Nobody awaits these runs; their events and final status
            // reach the parent like any run's.
            drop(crate::spawn::reattach(&inner, &parent, run));
        }
        Ok(Engine { inner, scratch })
    }
}
