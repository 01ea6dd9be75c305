//! The streamable HTTP transport (`--listen`), behind a bearer token.

use std::sync::Arc;

use anyhow::bail;

use super::args::McpArgs;
use super::engine::Shared;

/// Serves MCP over streamable HTTP until SIGTERM or Ctrl-C.
pub async fn serve(_shared: Arc<Shared>, _args: &McpArgs) -> anyhow::Result<()> {
    bail!("--listen is not available yet: run `bamboo-worker mcp` over stdio")
}
