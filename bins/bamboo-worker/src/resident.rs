//! `bamboo-worker serve`: a resident worker (F11) that engines on other
//! machines reach over `wss://`. See docs/operations.md, "Resident workers".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bamboo_subagent::resident::{serve_resident, tls, Drained, ResidentConfig};
use bamboo_subagent::token_file::read_token_file;
use bamboo_subagent::transport::Keepalive;
use tokio_util::sync::CancellationToken;

use crate::resident_pki::{self, SelfSigned};
use bamboo_executors as executors;
use bamboo_executors::flags::{passed_env, self_spec, ExecutorArgs};
use bamboo_executors::proc::tree::kill_all_descendants;

/// Flags of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:7300 (port 0: any free port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// File holding the bearer token every connection must present. It must
    /// not be readable by group or others (chmod 600).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// PEM certificate chain for TLS (wss://); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS; needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve wss:// with a private CA and a certificate for these host
    /// names (or IP addresses) made now, in --tls-dir (reused when there):
    /// hand its ca.pem to engines as `run --ca-cert`.
    #[arg(long, value_name = "NAME", num_args = 1.., conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: Vec<String>,
    /// Where --tls-self-signed keeps ca.pem, cert.pem and key.pem (0600).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "bamboo-tls",
        requires = "tls_self_signed"
    )]
    pub tls_dir: PathBuf,
    /// Allow a non-loopback --listen without TLS (the token then crosses the
    /// network in clear text).
    #[arg(long)]
    pub insecure_no_tls: bool,
    /// At most this many connections (one run each at a time); one more is
    /// refused with 503 "busy".
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_runs: usize,
    /// On SIGTERM, how long runs in flight may take to finish before they are
    /// cancelled.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub grace_secs: u64,
    /// Ping period of every link, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    pub keepalive_ms: u64,
    /// A link silent this long (no pong) is dead and its run is cancelled.
    #[arg(long, default_value_t = 8_000, value_name = "MS")]
    pub keepalive_timeout_ms: u64,
    /// The executor the runs use.
    #[command(flatten)]
    pub executor: ExecutorArgs,
}

/// Runs the resident worker until SIGTERM or Ctrl-C; `Ok` once drained.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let made = self_signed(&args)?;
    let config = config(&args, made.as_ref())?;
    let choice = args.executor.choice()?;
    let workspace = args.executor.workspace()?;
    let pass_env = passed_env(&args.executor.pass_env)?;
    let spec = self_spec(&choice, &workspace, pass_env, "resident");
    let executor = executors::build(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        let scheme = if config.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(endpoint = %format!("{scheme}://{addr}"), max_runs = config.max_runs, "resident worker listening");
        // The readiness line scripts and tests wait for.
        println!("listening {scheme}://{addr}");
        if let Some(made) = &made {
            tell_how_to_trust(made, &args, addr.port());
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        match serve_resident(listener, executor, config, shutdown).await {
            Drained::Clean => tracing::info!("resident worker stopped"),
            Drained::CancelledRuns => {
                tracing::warn!("resident worker stopped; runs past the grace period were cancelled")
            }
        }
        anyhow::Ok(())
    });
    // Nothing the runs started outlives the worker.
    let killed = kill_all_descendants();
    if killed > 0 {
        tracing::info!(killed, "ended the processes the runs left behind");
    }
    served
}

/// The CA and certificate of `--tls-self-signed`, made or reused.
fn self_signed(args: &ServeArgs) -> anyhow::Result<Option<SelfSigned>> {
    if args.tls_self_signed.is_empty() {
        return Ok(None);
    }
    resident_pki::ensure(&args.tls_dir, &args.tls_self_signed).map(Some)
}

/// Says on stderr (stdout carries the readiness line) where the CA is and
/// how an engine uses it.
fn tell_how_to_trust(made: &SelfSigned, args: &ServeArgs, port: u16) {
    let what = if made.made { "made" } else { "reused" };
    let host = &args.tls_self_signed[0];
    eprintln!(
        "bamboo-worker serve: {what} a CA and a certificate for {} in {} (key.pem is 0600; delete the directory for new ones); engines trust this worker with:\n  bamboo-worker run --remote wss://{host}:{port} --token-file {} --ca-cert {} ...",
        args.tls_self_signed.join(", "),
        args.tls_dir.display(),
        args.token_file.display(),
        made.ca.display()
    );
}

fn config(args: &ServeArgs, made: Option<&SelfSigned>) -> anyhow::Result<ResidentConfig> {
    if args.max_runs == 0 {
        bail!("--max-runs must be at least 1");
    }
    let (cert, key) = match made {
        Some(m) => (Some(&m.cert), Some(&m.key)),
        None => (args.tls_cert.as_ref(), args.tls_key.as_ref()),
    };
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            let read = |p: &Path, what: &str| {
                std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
            };
            let config = tls::server_config(&read(cert, "--tls-cert")?, &read(key, "--tls-key")?)?;
            Some(config)
        }
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.insecure_no_tls {
        bail!(
            "--listen {} is not a loopback address and no TLS is configured: the token would cross the network in clear text; give --tls-cert and --tls-key, or --insecure-no-tls if the network is trusted",
            args.listen
        );
    }
    let keepalive = Keepalive {
        interval: Duration::from_millis(args.keepalive_ms.max(1)),
        timeout: Duration::from_millis(args.keepalive_timeout_ms.max(1)),
    };
    let mut config = ResidentConfig::new(read_token_file(&args.token_file)?);
    config.tls = tls;
    config.max_runs = args.max_runs;
    config.grace = Duration::from_secs(args.grace_secs);
    config.keepalive = Some(keepalive);
    Ok(config)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
