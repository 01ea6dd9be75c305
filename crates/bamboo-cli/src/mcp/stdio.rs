//! The stdio transport. The protocol gets a private copy of the real
//! stdout and fd 1 is pointed at stderr, so nothing else this process or
//! its children print (a worker's `ready` line, a library's message) can
//! reach the client as a corrupt MCP message.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use rmcp::ServiceExt;

use super::engine::Shared;
use super::server::FleetServer;

/// The real stdout, for the protocol alone; fd 1 becomes stderr.
pub fn take_stdout() -> anyhow::Result<std::fs::File> {
    std::io::stdout()
        .flush()
        .context("cannot flush stdout before serving MCP on it")?;
    let protocol = nix::unistd::dup(std::io::stdout())
        .context("cannot duplicate stdout for the MCP stream")?;
    nix::unistd::dup2_stdout(std::io::stderr())
        .context("cannot point stdout at stderr while stdio carries MCP")?;
    Ok(std::fs::File::from(protocol))
}

/// Serves one client on stdin and `out` until it disconnects.
pub async fn serve(shared: Arc<Shared>, out: std::fs::File) -> anyhow::Result<()> {
    let transport = (tokio::io::stdin(), tokio::fs::File::from_std(out));
    let running = FleetServer::new(shared)
        .serve(transport)
        .await
        .context("the MCP client did not complete the initialize handshake on stdio")?;
    let reason = running.waiting().await;
    tracing::info!(?reason, "MCP client disconnected");
    Ok(())
}
