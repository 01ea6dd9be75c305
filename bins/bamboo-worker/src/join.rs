//! `bamboo-worker join`: a pool worker on NATS JetStream (issue 12). It dials
//! out (no listening port), keeps a lease in the pool's bucket and serves
//! runs from the pool's work queue with the executor its flags choose and
//! the provider key of its own environment: engines ship no keys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bamboo_executors::choice::ExecutorChoice;
use bamboo_pool::worker::{join, ExecutorFactory, JoinOptions};
use bamboo_pool::{NatsOptions, PoolName, PoolSettings};
use bamboo_subagent::spec::ProvisionSpec;
use tokio_util::sync::CancellationToken;

use bamboo_executors::flags::{passed_env, self_spec, ExecutorArgs};

/// Flags of `join`.
#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    /// NATS server URL(s), comma-separated (nats://host:4222, tls://host:4222).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The pool to join (letters, digits, '-', '_').
    #[arg(long, value_name = "NAME")]
    pool: String,
    /// A NATS credentials file (user JWT and seed).
    #[arg(long, value_name = "FILE", conflicts_with = "token_file")]
    creds: Option<PathBuf>,
    /// A file whose first line is the NATS token (never on the command line).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of CA certificates that sign the server's certificate; turns TLS on.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Most runs served at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    max_runs: usize,
    /// This worker's id in the pool [default: a fresh one].
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// On SIGTERM, how long running runs may go on before they are cancelled.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    drain_secs: u64,
    /// Lease time-to-live, used when this worker creates the pool.
    #[arg(long, default_value_t = 6, value_name = "SECS")]
    lease_ttl_secs: u64,
    #[command(flatten)]
    exec: ExecutorArgs,
}

/// Runs `join` to its end: 0 after a graceful leave, 1 when joining failed,
/// 2 for bad flags.
pub(crate) fn main(args: JoinArgs) -> ExitCode {
    let prepared = prepare(&args);
    let (opts, factory) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bamboo-worker join: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bamboo-worker join: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        let pool = opts.pool.clone();
        join(opts, factory, shutdown, |id| {
            // A readiness line for scripts and tests.
            println!("joined pool {pool} as {id}");
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bamboo-worker join: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM or SIGINT: stop taking work and leave.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received: leaving the pool");
    shutdown.cancel();
}

fn prepare(a: &JoinArgs) -> anyhow::Result<(JoinOptions, ExecutorFactory)> {
    let pool = PoolName::new(&a.pool)?;
    if a.max_runs == 0 {
        anyhow::bail!("--max-runs must be at least 1");
    }
    let mut nats = nats_options(
        &a.nats,
        a.token_file.as_deref(),
        a.creds.as_deref(),
        a.tls_ca.as_deref(),
    )?;
    nats.name = Some(format!("bamboo-worker join {}", a.pool));
    let choice = a.exec.choice().context("executor flags")?;
    let opts = JoinOptions {
        nats,
        pool,
        max_runs: a.max_runs,
        settings: PoolSettings {
            lease_ttl: Duration::from_secs(a.lease_ttl_secs.max(1)),
            ..PoolSettings::default()
        },
        worker_id: a.worker_id.clone(),
        drain: Duration::from_secs(a.drain_secs),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    Ok((opts, factory(&a.exec, &choice)?))
}

/// The NATS login from flags: the token is read from its file, never argv.
pub(crate) fn nats_options(
    url: &str,
    token_file: Option<&std::path::Path>,
    creds: Option<&std::path::Path>,
    tls_ca: Option<&std::path::Path>,
) -> anyhow::Result<NatsOptions> {
    let mut nats = NatsOptions::new(url);
    if let Some(path) = token_file {
        nats = nats.token_file(path)?;
    }
    nats.creds_file = creds.map(PathBuf::from);
    nats.tls_ca = tls_ca.map(PathBuf::from);
    Ok(nats)
}

/// Every run uses this worker's own executor, model, key, workspace and
/// `--pass-env` values, built once at start like a resident worker's
/// (`serve`): an engine's spec names none of them for a pool, and a bad
/// flag fails `join` at once instead of each run.
fn factory(exec: &ExecutorArgs, choice: &ExecutorChoice) -> anyhow::Result<ExecutorFactory> {
    let workspace = exec.workspace()?;
    let pass_env = passed_env(&exec.pass_env)?;
    let spec = self_spec(choice, &workspace, pass_env, "pool");
    let executor = bamboo_executors::build(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(move |_: &ProvisionSpec| Ok(executor.clone())))
}
