//! The run path's own type: [`RunPath`] owns everything a run needs (store,
//! event logs, worker leases and the warm pool, slots, approvals, steering,
//! the reservations) and knows nothing of the public API. [`crate::Engine`]
//! is a thin facade over it; the one way back up, a child's nested spawn
//! request, goes through the injected [`NestedSpawner`], so spawn, pump,
//! leases and the launch layer can change and be tested without the facade.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bamboo_domain::Session;
use bamboo_subagent::fabric::Fabric;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approval::ApprovalBroker;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::events::EventLogs;
use crate::launch::PlacementLauncher;
use crate::leases::WorkerLeases;
use crate::nested::NestedSpawner;
use crate::reservations::Reservations;
use crate::slots::RunSlots;
use crate::steering::SteeringRegistry;
use crate::store::{Deferred, SessionStore};

/// Shared state of one engine's run path.
#[derive(Debug)]
pub(crate) struct RunPath {
    pub cfg: EngineConfig,
    /// The store, with the endings a full disk refused kept until written.
    pub store: Arc<Deferred>,
    pub events: EventLogs,
    pub leases: WorkerLeases,
    pub slots: RunSlots,
    pub approvals: Arc<ApprovalBroker>,
    pub steering: SteeringRegistry,
    pub reservations: Reservations,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Where a child's nested spawn request goes (the facade, injected).
    pub nested: Arc<dyn NestedSpawner>,
    /// Each session's parent as read before (it never changes), so a run
    /// finds its ancestry without reading them again: a root with many
    /// children is large, and every run of a child would read it.
    parents: crate::parents::Parents,
}

impl RunPath {
    /// The run path over `store` whose workers come from `launcher`; `nested`
    /// gets a weak handle to it (it must not keep the run path alive).
    pub fn new(
        cfg: EngineConfig,
        store: Arc<Deferred>,
        launcher: Arc<PlacementLauncher>,
        nested: impl FnOnce(Weak<RunPath>) -> Arc<dyn NestedSpawner>,
    ) -> Arc<Self> {
        let rt = Arc::new_cyclic(|weak| RunPath {
            events: EventLogs::new(cfg.data_dir.join("events"), cfg.event_log),
            leases: crate::leases::WorkerLeases::new(launcher, cfg.warm),
            slots: RunSlots::new(cfg.max_running),
            approvals: Arc::new(ApprovalBroker::new(cfg.approvals.clone())),
            steering: SteeringRegistry::default(),
            reservations: Reservations::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            nested: nested(weak.clone()),
            parents: crate::parents::Parents::default(),
            store,
            cfg,
        });
        spawn_housekeeping(&rt);
        spawn_deferred_writes(&rt);
        rt
    }

    /// The durable inbox of `session_id` (`<data>/inbox/<id>`), recovered at
    /// engine start.
    pub fn inbox(&self, session_id: &str) -> Result<crate::inbox::Inbox, EngineError> {
        crate::store::check_id(session_id)?;
        Ok(crate::inbox::Inbox::attach(
            self.cfg.data_dir.join("inbox").join(session_id),
        )?)
    }

    /// Loads `child_id` and checks it is a child of `parent_id`.
    // Behaviours: C9.
    pub async fn load_child(
        &self,
        parent_id: &str,
        child_id: &str,
    ) -> Result<Session, EngineError> {
        let s = self
            .store
            .load(child_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(child_id.to_owned()))?;
        if s.child.is_none() {
            return Err(EngineError::NotAChild(child_id.to_owned()));
        }
        if s.parent_id.as_deref() != Some(parent_id) {
            return Err(EngineError::NotYourChild {
                child: child_id.to_owned(),
                parent: parent_id.to_owned(),
            });
        }
        Ok(s)
    }

    /// The sessions whose logs carry a run of a child of `parent_id`: the
    /// parent, its parent, ... up to the root (the human at the top sees
    /// the whole tree). Stops at a missing session or a cycle.
    // Behaviours: E7.
    pub async fn ancestry(&self, parent_id: &str) -> Vec<String> {
        let mut chain = vec![parent_id.to_owned()];
        while chain.len() <= 64 {
            let Some(last) = chain.last() else { break };
            let parent = match self.parents.get(last) {
                Some(known) => known,
                None => {
                    let Ok(Some(s)) = self.store.load(last).await else {
                        break;
                    };
                    self.parents.put(&s.id, s.parent_id.clone());
                    s.parent_id
                }
            };
            match parent {
                Some(p) if !chain.contains(&p) => chain.push(p),
                _ => break,
            }
        }
        chain
    }

    /// Cancels every run, waits for them to report, and retires every worker.
    pub async fn shutdown(&self) {
        self.reservations
            .cancel_all("cancelled: the engine is shutting down");
        self.shutdown.cancel();
        self.slots.close();
        self.tasks.close();
        let bound = self.cfg.timeouts.cancel_grace + Duration::from_secs(5);
        if tokio::time::timeout(bound, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some runs did not finish in time; their workers are killed");
        }
        self.leases.shutdown().await;
        self.approvals.close();
        self.events.close().await;
        if self.store.waiting() > 0 && self.store.retry().await == 0 {
            tracing::warn!(
                waiting = self.store.waiting(),
                "children's endings could not be stored (the disk is full?); the next engine on this data directory marks them as error"
            );
        }
    }
}

/// Housekeeping every quarter of `worker_idle`: retires pooled workers parked
/// longer than that, and removes stale worker records from the fabric (the
/// ones of workers killed with SIGKILL). Holds the runtime only weakly, and
/// stops at shutdown.
fn spawn_housekeeping(rt: &Arc<RunPath>) {
    let max_idle = rt.cfg.timeouts.worker_idle;
    let period = (max_idle / 4).max(Duration::from_millis(10));
    let fabric = Fabric::new(crate::provision::fabric_dir(&rt.cfg));
    let (weak, stop) = (Arc::downgrade(rt), rt.shutdown.clone());
    rt.tasks.spawn(async move {
        loop {
            let Some(rt) = weak.upgrade() else { return };
            let n = rt.leases.evict_idle(max_idle);
            drop(rt);
            if n > 0 {
                tracing::debug!(retired = n, "retired workers idle in the pool");
            }
            let f = fabric.clone();
            if let Ok(n @ 1..) = tokio::task::spawn_blocking(move || f.gc()).await {
                tracing::debug!(removed = n, "removed stale fabric records");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    });
}

/// How often endings a full disk refused are tried again.
const DEFERRED_RETRY: Duration = Duration::from_secs(1);

/// Writes the endings a full disk refused once it has room again (see
/// `store::deferred`). Holds the runtime only weakly; stops at shutdown.
fn spawn_deferred_writes(rt: &Arc<RunPath>) {
    let (weak, stop) = (Arc::downgrade(rt), rt.shutdown.clone());
    rt.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(DEFERRED_RETRY) => {}
            }
            let Some(rt) = weak.upgrade() else { return };
            if rt.store.waiting() > 0 {
                let n = rt.store.retry().await;
                if n > 0 {
                    tracing::info!(
                        written = n,
                        "stored children's endings the full disk had refused"
                    );
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{ApprovalPolicy, ApprovalRequest, Approved};
    use crate::launch::{LaunchError, Launcher, Link, LinkError, RemoteLauncher, Worker};
    use async_trait::async_trait;
    use bamboo_domain::{ChildInfo, CompletionStatus, Message};
    use bamboo_subagent::executor::echo::EchoExecutor;
    use bamboo_subagent::executor::{Executor, RunContext, RunOutcome, RunRequest};
    use bamboo_subagent::spec::ProvisionSpec;
    use bamboo_subagent::transport::client::{connect, Connection};
    use bamboo_subagent::transport::server::{serve_connection, ServerConfig};
    use futures::future::BoxFuture;
    use futures::FutureExt;
    use std::sync::Mutex;

    /// A worker running `.0` (echo, by default) served in this process
    /// over a loopback socket.
    struct Loopback(Arc<dyn Executor>);

    impl std::fmt::Debug for Loopback {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Loopback")
        }
    }

    #[derive(Debug)]
    struct LoopWorker(Mutex<Option<Connection>>);

    #[async_trait]
    impl Launcher for Loopback {
        async fn launch(&self, _: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("ws://{}", listener.local_addr().unwrap());
            let executor = self.0.clone();
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = serve_connection(stream, executor, &ServerConfig::default()).await;
            });
            let conn = connect(&endpoint, None).await.unwrap();
            Ok(Box::new(LoopWorker(Mutex::new(Some(conn)))))
        }
    }

    #[async_trait]
    impl Worker for LoopWorker {
        fn pid(&self) -> Option<u32> {
            None
        }
        fn is_alive(&mut self) -> bool {
            true
        }
        async fn connect(&self) -> Result<Link, LinkError> {
            let conn = self
                .0
                .lock()
                .unwrap()
                .take()
                .ok_or(LinkError::Other("used".into()))?;
            Ok(crate::launch::link_of(conn))
        }
        async fn kill(&mut self) {}
    }

    /// Answers every nested spawn request with a canned result.
    #[derive(Debug)]
    struct Canned;

    impl NestedSpawner for Canned {
        fn serve(
            &self,
            requester: String,
            body: serde_json::Value,
        ) -> BoxFuture<'static, serde_json::Value> {
            let text = format!("{requester} asked for {}", body["assignment"]);
            async move { serde_json::json!({"success": true, "result": text}) }.boxed()
        }
    }

    /// A run path on loopback echo workers, its store, and the data dir.
    async fn loopback_run_path() -> (
        Arc<RunPath>,
        Arc<crate::store::FileStore>,
        tempfile::TempDir,
    ) {
        loopback_with(Arc::new(EchoExecutor), |cfg| {
            cfg.enforce_permissions = false
        })
        .await
    }

    /// A run path on loopback workers running `executor`, configured by
    /// `configure`.
    async fn loopback_with(
        executor: Arc<dyn Executor>,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> (
        Arc<RunPath>,
        Arc<crate::store::FileStore>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(dir.path().to_path_buf());
        configure(&mut cfg);
        let store = Arc::new(crate::store::FileStore::open(dir.path()).await.unwrap());
        let deferred = Arc::new(crate::store::Deferred::new(store.clone()));
        let launcher = Arc::new(PlacementLauncher::new(
            Arc::new(Loopback(executor)),
            RemoteLauncher::default(),
            None,
            Arc::new(crate::launch::PoolJournal::new(dir.path())),
        ));
        let rt = RunPath::new(cfg, deferred, launcher, |_| Arc::new(Canned));
        (rt, store, dir)
    }

    /// A root and its child whose assignment is `prompt`, both stored.
    async fn stored_child(store: &crate::store::FileStore, prompt: &str) -> (Session, Session) {
        let root = Session::new_root("p");
        let mut child = Session::new_child(&root, ChildInfo::new("r", prompt));
        child.messages.push(Message::user(prompt));
        store.create(&root).await.unwrap();
        store.create(&child).await.unwrap();
        (root, child)
    }

    #[tokio::test]
    async fn a_message_that_waited_while_the_worker_was_leased_reaches_the_run() {
        // E16: steering sent once the child was running but before its run
        // was on the worker waits in the inbox; it must reach the worker
        // after the run does (a worker drops a message that comes first).
        let (rt, store, _dir) = loopback_run_path().await;
        let (root, child) = stored_child(&store, "__steer").await;
        let early = crate::inbox::InboxMessage::new(
            crate::inbox::InboxKind::Message,
            root.id.clone(),
            "early-word",
        );
        rt.inbox(&child.id).unwrap().deliver(&early).unwrap();
        let ticket = crate::spawn::enqueue(&rt, &root.id, &child.id).unwrap();
        // A hang guard only: the run ends at once when the message arrives.
        let report = tokio::time::timeout(Duration::from_secs(60), ticket)
            .await
            .expect("the run never got the message that waited in its inbox")
            .unwrap();
        assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
        assert_eq!(report.result.as_deref(), Some("echo: early-word"));
        rt.shutdown().await;
    }

    #[tokio::test]
    async fn a_run_and_its_nested_spawn_need_no_facade() {
        let (rt, store, _dir) = loopback_run_path().await;
        let (root, child) = stored_child(&store, "__spawn:sub").await;
        let ticket = crate::spawn::enqueue(&rt, &root.id, &child.id).unwrap();
        let report = ticket.await.unwrap();
        assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
        let result = report.result.unwrap_or_default();
        assert!(
            result.contains(&format!("spawned:{} asked for \"sub\"", child.id)),
            "{result}"
        );
        rt.shutdown().await;
    }

    /// Completes each run with the gated actions it came approved for.
    #[derive(Debug)]
    struct ShowsApproved;

    #[async_trait]
    impl Executor for ShowsApproved {
        async fn run(&self, request: RunRequest, _: RunContext) -> RunOutcome {
            let shown: Vec<String> = request
                .approved
                .iter()
                .map(|a| format!("{}={}", a.tool_name, a.resource))
                .collect();
            RunOutcome::completed(shown.join(","))
        }
    }

    /// Approves one action ahead per run, named after the run.
    #[derive(Debug)]
    struct Ahead;

    #[async_trait]
    impl ApprovalPolicy for Ahead {
        async fn decide(&self, _: &ApprovalRequest) -> Option<bool> {
            Some(true)
        }
        fn approved_ahead(&self, child: &str, assignment: &str) -> Vec<Approved> {
            vec![Approved {
                tool_name: "tool".into(),
                resource: format!("{assignment} by {child}"),
            }]
        }
    }

    /// The result of one run of a new child on `assignment` on `rt`.
    async fn one_run(
        rt: &Arc<RunPath>,
        store: &crate::store::FileStore,
        assignment: &str,
    ) -> String {
        let (root, child) = stored_child(store, assignment).await;
        let ticket = crate::spawn::enqueue(rt, &root.id, &child.id).unwrap();
        let report = ticket.await.unwrap();
        assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
        let result = report.result.unwrap_or_default();
        result.replace(&child.id, "CHILD")
    }

    #[tokio::test]
    async fn the_run_carries_what_the_policy_approves_ahead_when_permissions_are_enforced() {
        // E17: the policy's advance approvals travel with the run, so the
        // worker need not ask for them.
        let policy = |cfg: &mut EngineConfig| {
            cfg.approvals.policy = Some(Arc::new(Ahead));
        };
        let (rt, store, _dir) = loopback_with(Arc::new(ShowsApproved), policy).await;
        assert_eq!(one_run(&rt, &store, "go").await, "tool=go by CHILD");
        rt.shutdown().await;

        // Nothing asks when permissions are not enforced: nothing to carry.
        let unenforced = |cfg: &mut EngineConfig| {
            cfg.approvals.policy = Some(Arc::new(Ahead));
            cfg.enforce_permissions = false;
        };
        let (rt, store, _dir) = loopback_with(Arc::new(ShowsApproved), unenforced).await;
        assert_eq!(one_run(&rt, &store, "go").await, "");
        rt.shutdown().await;
    }
}
