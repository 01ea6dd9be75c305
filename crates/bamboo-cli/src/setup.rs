//! Building the engine `run` drives: worker program, executor, approvals,
//! credentials, and with `--remote` the resident worker every child runs on.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bamboo_engine::CredentialResolver;
use bamboo_engine::{ApprovalPolicy, Engine, Placement, RemoteEndpoint};
use bamboo_subagent::spec::ProviderCredential;

use super::RunOptions;

/// Events of the root's log `run` keeps in memory. `run` is the log's one
/// reader and keeps up, so a short ring serves it; were it to fall behind it
/// reads on from the log file. The engine's default (tens of thousands of
/// events, several hundred bytes each) held most of the front door's memory
/// while a child streamed.
const RING_EVENTS: usize = 8192;

/// Starts the engine with data under `data_dir`.
pub async fn build_engine(
    options: &RunOptions,
    data_dir: PathBuf,
    policy: Arc<dyn ApprovalPolicy>,
    pool: Option<bamboo_pool::PoolClient>,
) -> anyhow::Result<Engine> {
    let program = match &options.worker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find this program's own path to spawn workers; pass --worker-bin")?,
    };
    let mut builder = Engine::builder()
        .data_dir(data_dir)
        .worker_program(program)
        .worker_args(options.worker_args.clone())
        .max_running(options.max_running)
        .event_capacity(RING_EVENTS)
        .approval_policy(policy)
        .enforce_permissions(true);
    for (name, value) in &options.pass_env {
        builder = builder.pass_env(name, value.clone());
    }
    builder = builder.executor(options.executor.spec());
    if let Some(p) = options.executor.provider() {
        builder = builder.credentials(Arc::new(OneCredential(p.credential())));
    }
    if let Some(r) = &options.remote {
        let mut remote = RemoteEndpoint::new(r.token.clone());
        remote.ca_certs = r.ca_certs.clone();
        remote.max_connections = r.max_connections.min(options.max_running);
        let placement = Placement::Remote {
            endpoint: r.endpoint.clone(),
        };
        builder = builder
            .remote_worker(r.endpoint.clone(), remote)
            .default_placement(placement);
    }
    if let (Some(target), Some(client)) = (&options.pool, pool) {
        builder = builder.nats_pool(client).default_placement(
            bamboo_subagent::spec::Placement::Schedulable {
                pool: target.pool.clone(),
            },
        );
    }
    builder.build().await.context("cannot start the engine")
}

/// Hands out the one credential `run` was given, for its provider only.
#[derive(Debug)]
struct OneCredential(ProviderCredential);

impl CredentialResolver for OneCredential {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        (provider == self.0.provider).then(|| self.0.clone())
    }
}
