//! The worker's life after its spec is read (F4, F5, F12): bind, publish,
//! serve, withdraw.
//!
//! A one-shot worker serves one connection, then exits; if nobody connects
//! within the accept timeout it exits too. A reusable worker serves connection
//! after connection, and exits after the idle timeout without a connection. Every connection is upgraded and served on its own task, so a
//! connection that never completes its handshake cannot block the parent's.
//! Both renew their lease while alive, watch for their parent's
//! death, and withdraw their record on the way out.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::executor::Executor;
use crate::fabric::{Fabric, FabricError};
use crate::idle::{run_when_quiet, Activity, IdleHook};
use crate::record::AgentRecord;
use crate::spec::{ProvisionSpec, DEFAULT_IDLE_TIMEOUT_SECS};
use crate::transport::accept::{serve_listener, ListenEnd};
use crate::transport::server::ServerConfig;
use crate::transport::{Keepalive, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES};

/// Tunables of the serving loop. Defaults follow the reference: a 60 s lease
/// renewed every 20 s.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long a record stays valid without renewal.
    pub lease: Duration,
    /// How often the lease is renewed.
    pub renew_every: Duration,
    /// How long a one-shot worker waits for its one connection.
    pub accept_timeout: Duration,
    /// Exit soon after the parent process dies (F12).
    pub watch_parent: bool,
    /// The parent's pid as seen when the process started (F12). A parent
    /// that dies before serving starts re-parents the worker, so reading it
    /// only then would watch the wrong process. `None`: read it when serving
    /// starts.
    pub parent_pid: Option<u32>,
    /// Cancelled by the embedder when it learns first that the parent died
    /// (for example from `PR_SET_PDEATHSIG`); honoured besides the polling.
    pub parent_gone: Option<CancellationToken>,
    /// How often the parent is checked.
    pub parent_poll: Duration,
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
    /// Version string published in the record.
    pub version: String,
    /// Runs once per quiet spell (no run or lease renewal in flight), after
    /// its delay.
    pub idle_hook: Option<IdleHook>,
    /// A connection must finish its handshake (token included) within this.
    pub handshake_timeout: Duration,
    /// Link keepalive; `None` turns it off.
    pub keepalive: Option<Keepalive>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            renew_every: Duration::from_secs(20),
            accept_timeout: Duration::from_secs(60),
            watch_parent: true,
            parent_pid: None,
            parent_gone: None,
            parent_poll: Duration::from_millis(200),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            idle_hook: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            keepalive: Some(Keepalive::default()),
        }
    }
}

/// Why a worker stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// A one-shot worker served its connection.
    Served,
    /// Nobody connected in time (accept or idle timeout).
    Idle,
    /// The parent process died.
    ParentGone,
    /// Shutdown was requested.
    Shutdown,
}

/// Serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Binding the loopback listener failed.
    #[error("cannot bind a loopback listener: {0}")]
    Bind(std::io::Error),
    /// Publishing the discovery record failed.
    #[error(transparent)]
    Fabric(#[from] FabricError),
}

/// A bound, published worker, ready to serve.
#[derive(Debug)]
pub struct Worker {
    listener: TcpListener,
    fabric: Fabric,
    record: AgentRecord,
    spec_reusable: bool,
    idle_timeout: Duration,
    options: WorkerOptions,
    server: ServerConfig,
}

impl Worker {
    /// Binds 127.0.0.1 on an OS-chosen port and publishes the record.
    pub async fn bind(spec: &ProvisionSpec, options: WorkerOptions) -> Result<Self, WorkerError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(WorkerError::Bind)?;
        let addr = listener.local_addr().map_err(WorkerError::Bind)?;
        let now = Utc::now();
        let record = AgentRecord {
            agent_id: spec.identity.child_id.clone(),
            role: spec.identity.role.clone(),
            labels: vec![format!("executor:{}", spec.executor.kind())],
            endpoint: format!("ws://{addr}"),
            pid: std::process::id(),
            version: options.version.clone(),
            started_at: now,
            lease_expires_at: now + lease_delta(options.lease),
        };
        let fabric = Fabric::new(&spec.fabric_dir);
        fabric.publish(&record)?;
        Ok(Self {
            listener,
            fabric,
            record,
            spec_reusable: spec.reusable,
            idle_timeout: Duration::from_secs(
                spec.limits
                    .idle_timeout_secs
                    .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
            ),
            server: ServerConfig {
                token: spec.secrets.worker_auth_token.clone(),
                max_frame_bytes: options.max_frame_bytes,
                activity: options.idle_hook.as_ref().map(|_| Activity::default()),
                handshake_timeout: options.handshake_timeout,
                keepalive: options.keepalive,
                ..ServerConfig::default()
            },
            options,
        })
    }

    /// The published record.
    pub fn record(&self) -> &AgentRecord {
        &self.record
    }

    /// Serves until the worker's life ends, then withdraws the record.
    pub async fn serve(
        self,
        executor: Arc<dyn Executor>,
        shutdown: CancellationToken,
    ) -> ExitReason {
        let stop = shutdown.child_token();
        let renew = tokio::spawn(renew_lease(
            self.fabric.clone(),
            self.record.clone(),
            self.options.clone(),
            self.server.activity.clone(),
            stop.clone(),
        ));
        let parent_gone = self.options.parent_gone.clone().unwrap_or_default();
        let parent = self.options.watch_parent.then(|| {
            tokio::spawn(watch_parent(
                self.options.parent_pid,
                self.options.parent_poll,
                parent_gone.clone(),
            ))
        });
        let quiet = match (&self.server.activity, &self.options.idle_hook) {
            (Some(activity), Some(hook)) => Some(tokio::spawn(run_when_quiet(
                activity.clone(),
                hook.clone(),
                stop.clone(),
            ))),
            _ => None,
        };
        let reason = self.accept_loop(executor, &stop, &parent_gone).await;
        stop.cancel();
        renew.abort();
        if let Some(q) = quiet {
            q.abort();
        }
        if let Some(p) = parent {
            p.abort();
        }
        if let Err(e) = self.fabric.withdraw(&self.record.agent_id) {
            tracing::warn!(error = %e, "could not withdraw the fabric record");
        }
        reason
    }

    async fn accept_loop(
        &self,
        executor: Arc<dyn Executor>,
        stop: &CancellationToken,
        parent_gone: &CancellationToken,
    ) -> ExitReason {
        let wait = if self.spec_reusable {
            self.idle_timeout
        } else {
            self.options.accept_timeout
        };
        let once = !self.spec_reusable;
        let served = tokio::select! {
            biased;
            _ = stop.cancelled() => return ExitReason::Shutdown,
            _ = parent_gone.cancelled() => return ExitReason::ParentGone,
            r = serve_listener(&self.listener, executor, &self.server, once, wait) => r,
        };
        match served {
            ListenEnd::Served => ExitReason::Served,
            ListenEnd::Idle => ExitReason::Idle,
        }
    }
}

fn lease_delta(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(60))
}

async fn renew_lease(
    fabric: Fabric,
    mut record: AgentRecord,
    options: WorkerOptions,
    activity: Option<Activity>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(options.renew_every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A renewal wakes an idle worker and maps code back in; counting it
        // as work lets the idle hook give that back too.
        let _busy = activity.as_ref().map(Activity::begin);
        record.lease_expires_at = Utc::now() + lease_delta(options.lease);
        if let Err(e) = fabric.publish(&record) {
            tracing::warn!(error = %e, "could not renew the lease");
        }
    }
}

/// Cancels `gone` once this process is no longer the child of `original`
/// (default: its parent now), checking at once and then every `poll`: a
/// parent that died earlier re-parented us already. Polling `getppid` is
/// portable across Unix and, unlike `PR_SET_PDEATHSIG`, is not fooled by the
/// parent's spawning thread exiting while the parent lives on.
async fn watch_parent(original: Option<u32>, poll: Duration, gone: CancellationToken) {
    #[cfg(unix)]
    {
        let original = original.unwrap_or_else(std::os::unix::process::parent_id);
        loop {
            if std::os::unix::process::parent_id() != original {
                tracing::info!("parent process {original} is gone; exiting");
                gone.cancel();
                return;
            }
            tokio::time::sleep(poll).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (original, poll, gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::echo::EchoExecutor;
    use crate::frames::{ChildFrame, ParentFrame, RunRequest};
    use crate::spec::ExecutorSpec;
    use crate::transport::client::connect;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Options whose idle hook counts its calls; quiet means `after_ms` idle.
    fn counting(after_ms: u64) -> (WorkerOptions, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let options = WorkerOptions {
            watch_parent: false,
            idle_hook: Some(IdleHook {
                after: Duration::from_millis(after_ms),
                run: Arc::new(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            }),
            ..WorkerOptions::default()
        };
        (options, calls)
    }

    #[tokio::test]
    async fn the_idle_hook_runs_after_a_run_while_the_parent_stays_connected() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ProvisionSpec::new("w", ExecutorSpec::Echo, dir.path().to_string_lossy());
        spec.reusable = true;
        let (options, calls) = counting(100);
        let worker = Worker::bind(&spec, options).await.unwrap();
        let endpoint = worker.record().endpoint.clone();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(worker.serve(Arc::new(EchoExecutor), shutdown.clone()));

        let mut conn = connect(&endpoint, None).await.unwrap();
        conn.sender
            .send(ParentFrame::Run(RunRequest::new("__sleep_ms:300 hi")))
            .await
            .unwrap();
        loop {
            match conn.receiver.recv().await {
                Some(Ok(ChildFrame::Terminal(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("expected a terminal frame, got {other:?}"),
            }
        }
        // At most the quiet spell before the run frame arrived has counted.
        let before = calls.load(Ordering::SeqCst);
        assert!(before <= 1, "the hook ran {before} times");
        // Parked on the open connection, like a pooled worker: one more call.
        // The run used the real clock (its frames cross a real socket); the
        // quiet spell after it is pure timing, so the clock stops here and
        // the sleep advances it without waiting.
        tokio::time::pause();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(calls.load(Ordering::SeqCst), before + 1);

        shutdown.cancel();
        assert_eq!(served.await.unwrap(), ExitReason::Shutdown);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_renewal_counts_as_work_so_the_hook_runs_again_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProvisionSpec::new("w", ExecutorSpec::Echo, dir.path().to_string_lossy());
        let (mut options, calls) = counting(50);
        options.renew_every = Duration::from_millis(300);
        let worker = Worker::bind(&spec, options).await.unwrap();
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(worker.serve(Arc::new(EchoExecutor), shutdown.clone()));
        // Start-up, then renewals at 300, 600 and 900 ms: four quiet spells,
        // exactly, on the paused clock.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let n = calls.load(Ordering::SeqCst);
        assert_eq!(n, 4, "the hook ran {n} times");
        shutdown.cancel();
        assert_eq!(served.await.unwrap(), ExitReason::Shutdown);
    }

    fn one_shot(dir: &tempfile::TempDir) -> ProvisionSpec {
        ProvisionSpec::new("w", ExecutorSpec::Echo, dir.path().to_string_lossy())
    }

    /// F12: the parent noted at start-up is the one watched. Our own pid is
    /// never our parent, so this worker's parent counts as already gone: it
    /// must exit at once, not wait out its 60 s accept timeout.
    #[tokio::test(start_paused = true)]
    async fn a_parent_gone_before_serving_started_ends_the_worker_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let options = WorkerOptions {
            parent_pid: Some(std::process::id()),
            ..WorkerOptions::default()
        };
        let worker = Worker::bind(&one_shot(&dir), options).await.unwrap();
        let started = tokio::time::Instant::now();
        let reason = worker
            .serve(Arc::new(EchoExecutor), CancellationToken::new())
            .await;
        assert_eq!(reason, ExitReason::ParentGone);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(
            Fabric::new(dir.path()).resolve("w").is_none(),
            "record withdrawn"
        );
    }

    /// F12: news of the parent's death from outside (PR_SET_PDEATHSIG in the
    /// binary) ends the worker without waiting for the next poll.
    #[tokio::test(start_paused = true)]
    async fn an_external_parent_death_notice_ends_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let gone = CancellationToken::new();
        let options = WorkerOptions {
            parent_gone: Some(gone.clone()),
            parent_poll: Duration::from_secs(3600),
            ..WorkerOptions::default()
        };
        let worker = Worker::bind(&one_shot(&dir), options).await.unwrap();
        let served = tokio::spawn(worker.serve(Arc::new(EchoExecutor), CancellationToken::new()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!served.is_finished(), "the real parent lives: keep serving");
        gone.cancel();
        assert_eq!(served.await.unwrap(), ExitReason::ParentGone);
    }
}
