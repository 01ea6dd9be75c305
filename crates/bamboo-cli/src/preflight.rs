//! Before any child is created: is the infrastructure `run` was pointed at
//! there? A resident worker is reached once with its token (address, TLS and
//! token checked); a NATS pool is asked which workers have joined it. A
//! setup that cannot work is reported once, as a usage error (exit 2),
//! instead of once per child as a task failure.

use std::time::Duration;

use bamboo_subagent::transport::client::{connect_with, ClientOptions};
use bamboo_subagent::transport::TransportError;

use super::{PoolTarget, RemoteTarget};

/// How long the check may take to reach an endpoint.
const REACH: Duration = Duration::from_secs(10);

/// The run cannot work as configured: say why once, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Misconfigured(pub String);

/// Reaches the resident worker of `--remote` once, with its token.
pub async fn remote(target: &RemoteTarget) -> Result<(), Misconfigured> {
    let options = ClientOptions {
        extra_root_certs: target.ca_certs.clone(),
        connect_timeout: REACH,
        handshake_timeout: REACH,
        ..ClientOptions::default()
    };
    match connect_with(&target.endpoint, Some(&target.token), &options).await {
        // The token was accepted before the worker said it was busy.
        Ok(_) | Err(TransportError::Busy { .. }) => Ok(()),
        Err(e) => Err(Misconfigured(format!(
            "--remote {}: {e}; no child was started",
            target.endpoint
        ))),
    }
}

/// Connects to the pool's NATS server and says so when no worker has joined
/// the pool yet (children then wait in its queue). `Err` when the server
/// cannot be used.
pub async fn pool(
    target: &PoolTarget,
    settings: bamboo_pool::ClientSettings,
) -> Result<(bamboo_pool::PoolClient, Option<String>), Misconfigured> {
    let refused = |e: &dyn std::fmt::Display| {
        Misconfigured(format!(
            "--nats {} --pool {}: {e}; no child was started",
            target.nats.url, target.pool
        ))
    };
    let client = bamboo_pool::PoolClient::connect(&target.nats, settings)
        .await
        .map_err(|e| refused(&e))?;
    let name = bamboo_pool::PoolName::new(&target.pool).map_err(|e| refused(&e))?;
    let handles = client.pool(&name).await.map_err(|e| refused(&e))?;
    let note = match handles.workers().await {
        Ok(workers) if workers.is_empty() => Some(format!(
            "no worker has joined pool {} yet: the children wait in its queue until one joins (`bamboo-worker join --nats URL --pool {}`), each at most the queue timeout",
            target.pool, target.pool
        )),
        Ok(workers) => {
            let slots: usize = workers.iter().map(|w| w.max_runs).sum();
            Some(format!(
                "pool {}: {} {} joined, {slots} run {} in all",
                target.pool,
                workers.len(),
                if workers.len() == 1 { "worker has" } else { "workers have" },
                if slots == 1 { "slot" } else { "slots" }
            ))
        }
        // Not knowing is no reason to stop: the queue holds the runs.
        Err(_) => None,
    };
    Ok((client, note))
}
