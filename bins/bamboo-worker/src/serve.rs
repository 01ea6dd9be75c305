//! Worker mode: watch the parent, read the spec, build the executor, bind,
//! publish, serve, withdraw (F4), and leave no process behind (F12).
//!
//! A worker runs on a current-thread runtime: it has one engine connection in
//! normal use and all its work is I/O-bound, and one thread keeps start-up
//! and idle memory small. On any exit (parent death and SIGTERM included) it
//! kills the cgroup leaves of its runs and every descendant it still has.

mod parent;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bamboo_subagent::idle::IdleHook;
use bamboo_subagent::worker::{Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::memory;
use crate::stdin_spec::read_spec;
use bamboo_executors as executors;
use bamboo_executors::proc::tree::kill_all_descendants;

pub use parent::Parent;

/// How often the parent is polled, besides the parent-death signal.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// Settings of worker mode that come from fixed command-line flags.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Longest wait for the spec on stdin.
    pub stdin_timeout: Duration,
    /// Longest wait of a one-shot worker for its connection.
    pub accept_timeout: Duration,
    /// Exit when the parent process dies.
    pub watch_parent: bool,
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
    /// Give memory back after this long without a run or lease renewal in
    /// flight; `None`: never.
    pub idle_trim: Option<Duration>,
}

/// Exit status of worker mode: 0 after a normal life, 2 for a bad spec or an
/// unsupported executor, 1 when serving could not start or the parent died
/// before it did. Whatever the worker started is killed before it returns.
pub fn run(settings: ServeSettings) -> i32 {
    // First, before anything that takes time: a parent that dies after this
    // is noticed (F12).
    let parent = Parent::at_start();
    // Its last act (below) removes them: a run's emptied cgroup leaf can
    // serve the next run instead of being created and removed each time.
    executors::proc::cgroup::keep_emptied_leaves();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bamboo-worker: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(live(settings, parent));
    // Nothing the worker started outlives it, whatever ended its life.
    let killed = kill_all_descendants();
    if killed > 0 {
        tracing::info!(killed, "ended the processes the worker's runs left behind");
    }
    code
}

async fn live(settings: ServeSettings, parent: Parent) -> i32 {
    let parent_gone = settings.watch_parent.then(|| parent.watch(PARENT_POLL));
    let read = read_spec(settings.stdin_timeout);
    let spec = match &parent_gone {
        Some(gone) => tokio::select! {
            r = read => r,
            _ = gone.cancelled() => {
                eprintln!("bamboo-worker: the parent process {} died before the spec was read; exiting", parent.pid());
                return 1;
            }
        },
        None => read.await,
    };
    let spec = match spec {
        Ok(spec) => spec,
        Err(e) => return refuse(&e.to_string()),
    };
    let executor = match executors::build(&spec) {
        Ok(x) => x,
        Err(e) => return refuse(&e.to_string()),
    };
    let options = WorkerOptions {
        accept_timeout: settings.accept_timeout,
        // `parent_gone` already watches, signal and polling, from the start.
        watch_parent: false,
        parent_pid: Some(parent.pid()),
        parent_gone,
        max_frame_bytes: settings.max_frame_bytes,
        idle_hook: settings.idle_trim.map(|after| IdleHook {
            after,
            run: Arc::new(memory::trim),
        }),
        ..WorkerOptions::default()
    };
    let worker = match Worker::bind(&spec, options).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bamboo-worker: {e}");
            return 1;
        }
    };
    tracing::info!(endpoint = %worker.record().endpoint, child_id = %spec.identity.child_id, "worker ready");
    // A readiness line lets our fleet stop waiting at once; the fabric
    // record stays the source of truth. Only when our fleet asks: a foreign
    // parent (the reference framework's) lets the worker inherit its own
    // stdout, an MCP stdio server's NDJSON, which a stray line corrupts.
    if bamboo_subagent::fleet::ready_line_wanted() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {}", worker.record().endpoint).and_then(|_| out.flush());
    }
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        stop_requested().await;
        signal.cancel();
    });
    let reason = worker.serve(executor, shutdown).await;
    tracing::info!(?reason, "worker exiting");
    0
}

/// Resolves on Ctrl-C or SIGTERM, so `kill <worker>` also ends its runs'
/// programs rather than orphaning them.
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = term => {}
        _ = interrupt => {}
    }
}

fn refuse(message: &str) -> i32 {
    eprintln!("bamboo-worker: {message}");
    2
}
