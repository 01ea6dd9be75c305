//! `bamboo-worker mcp`: the fleet as an MCP server, so any MCP client (Claude
//! Code, Codex, an SDK program) can be the parent of sub-agents.
//!
//! One engine per process, on `--data-dir`; each MCP connection is a root
//! session (or continues `--root`). Modules: [`args`] (flags), `engine`
//! (building the engine), `server` (the MCP handler, one per connection),
//! `tools` (tool descriptions and results), `wait`, `approvals`,
//! `resources`, `config` (`--print-config`), `stdio` and `http` (the two
//! transports).

mod approvals;
pub mod args;
mod config;
mod engine;
mod http;
mod resources;
mod server;
mod stdio;
mod tools;
mod wait;

use std::time::Duration;

use anyhow::Context;

pub use args::McpArgs;

/// The longest wait for running children to be cancelled at exit.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Runs `bamboo-worker mcp` until the client disconnects (stdio) or the
/// process is told to stop (`--listen`).
pub fn run(args: McpArgs) -> anyhow::Result<()> {
    if let Some(client) = args.print_config {
        print!("{}", config::snippet(client)?);
        return Ok(());
    }
    // Before anything can print: the MCP stream owns the real stdout from
    // here on, and fd 1 points at stderr, so a stray print (ours, a library's
    // or a child process's) cannot corrupt the protocol.
    let protocol_out = match args.listen {
        None => Some(stdio::take_stdout()?),
        Some(_) => None,
    };
    let settings = args.settings()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let shared = engine::start(&args, settings).await?;
        let served = match protocol_out {
            Some(out) => stdio::serve(shared.clone(), out).await,
            None => http::serve(shared.clone(), &args).await,
        };
        // Bounded: a stuck worker must not keep a gone client's server alive.
        if tokio::time::timeout(SHUTDOWN_LIMIT, shared.engine.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the engine did not shut down in time; exiting anyway");
        }
        served
    });
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}
