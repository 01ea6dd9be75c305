//! Worker mode: read the spec, build the executor, bind, publish, serve,
//! withdraw (F4).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bamboo_subagent::idle::IdleHook;
use bamboo_subagent::worker::{Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::executors;
use crate::memory;
use crate::stdin_spec::read_spec;

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
/// unsupported executor, 1 when serving could not start.
pub fn run(settings: ServeSettings) -> i32 {
    let spec = match read_spec(settings.stdin_timeout) {
        Ok(spec) => spec,
        Err(e) => return refuse(&e.to_string()),
    };
    let executor = match executors::build(&spec) {
        Ok(x) => x,
        Err(e) => return refuse(&e),
    };
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
    let options = WorkerOptions {
        accept_timeout: settings.accept_timeout,
        watch_parent: settings.watch_parent,
        max_frame_bytes: settings.max_frame_bytes,
        idle_hook: settings.idle_trim.map(|after| IdleHook {
            after,
            run: Arc::new(memory::trim),
        }),
        ..WorkerOptions::default()
    };
    runtime.block_on(async move {
        let worker = match Worker::bind(&spec, options).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("bamboo-worker: {e}");
                return 1;
            }
        };
        tracing::info!(endpoint = %worker.record().endpoint, child_id = %spec.identity.child_id, "worker ready");
        // A readiness line lets our fleet stop waiting at once; the fabric
        // record stays the source of truth.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {}", worker.record().endpoint).and_then(|_| out.flush());
        drop(out);
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                signal.cancel();
            }
        });
        let reason = worker.serve(executor, shutdown).await;
        tracing::info!(?reason, "worker exiting");
        0
    })
}

fn refuse(message: &str) -> i32 {
    eprintln!("bamboo-worker: {message}");
    2
}
