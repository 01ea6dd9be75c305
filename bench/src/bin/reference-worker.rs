//! The reference worker for the memory comparison in `cargo xtask bench
//! scale`: the public Bamboo framework's worker library (crate
//! `bamboo-subagent` 2026.7.3) serving its echo executor, set up as that
//! crate's demo worker is (spec on stdin, loopback WebSocket, fabric record,
//! one current-thread runtime, the system allocator). Only echo specs.

use std::sync::Arc;
use std::time::Duration;

use ref_subagent::discovery::Fabric;
use ref_subagent::executor::EchoExecutor;
use ref_subagent::proto::AgentRecord;
use ref_subagent::provision::{ExecutorSpec, ProvisionSpec};
use ref_subagent::transport::WsServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let spec = ProvisionSpec::read_from_stdin()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the provision spec from stdin: {e}"))?;
    if !matches!(spec.executor, ExecutorSpec::Echo) {
        anyhow::bail!("the reference worker serves only the echo executor");
    }
    let server = WsServer::bind_loopback()
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind a loopback port: {e}"))?;
    let now = chrono::Utc::now();
    let record = AgentRecord {
        agent_id: spec.identity.child_id.clone(),
        role: spec.identity.role.clone(),
        labels: Vec::new(),
        endpoint: server.ws_endpoint(),
        pid: std::process::id(),
        version: "reference".into(),
        started_at: now,
        lease_expires_at: now + chrono::Duration::seconds(60),
    };
    let fabric = Fabric::at(&spec.fabric_dir);
    fabric
        .publish(&record)
        .await
        .map_err(|e| anyhow::anyhow!("cannot publish the fabric record: {e}"))?;
    let idle = Duration::from_secs(spec.limits.idle_timeout_secs.unwrap_or(300));
    let executor = Arc::new(EchoExecutor);
    let _ = if spec.reusable {
        server
            .serve_reusable_with_idle_timeout(executor, idle)
            .await
    } else {
        server
            .serve_one_with_accept_timeout(executor, Duration::from_secs(120))
            .await
    };
    let _ = fabric.withdraw(&spec.identity.child_id).await;
    Ok(())
}
