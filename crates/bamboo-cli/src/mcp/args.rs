//! The flags of `bamboo-worker mcp` and what they resolve to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use bamboo_subagent::Secret;

use crate::{units, ApproveMode, ExecutorChoice};
use bamboo_executors::flags::{passed_env, ExecutorArgs};

/// Flags of `mcp`.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// Keep sessions here, so they survive client restarts
    /// [default: $XDG_STATE_HOME/bamboo-fleet/mcp, else ~/.local/state/bamboo-fleet/mcp].
    /// One `mcp` process at a time per directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Continue root session ROOT instead of starting a new root per
    /// connection (`bamboo-worker sessions --data-dir DIR` lists them).
    #[arg(long, value_name = "ROOT")]
    pub root: Option<String>,
    /// Serve the streamable HTTP transport on ADDR:PORT (path /mcp) instead of
    /// stdio; needs --token-file. A non-loopback address needs --tls-cert and
    /// --tls-key (or --insecure-no-tls).
    #[arg(long, value_name = "ADDR:PORT", requires = "token_file")]
    pub listen: Option<SocketAddr>,
    /// --listen: file holding the bearer token every request must present
    /// (mode 600).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub token_file: Option<PathBuf>,
    /// --listen: PEM certificate chain for HTTPS; needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// --listen: PEM private key for HTTPS; needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// --listen: allow a non-loopback address without TLS (the token then
    /// crosses the network in clear text).
    #[arg(long, requires = "listen")]
    pub insecure_no_tls: bool,
    /// Print the snippet that adds this server to CLIENT, with the other
    /// flags given here, and exit.
    #[arg(long, value_enum, value_name = "CLIENT")]
    pub print_config: Option<ClientKind>,

    #[command(flatten)]
    pub exec: ExecutorArgs,

    /// How gated actions of the children are answered. `ask` (default): the
    /// person at the MCP client decides, through an elicitation when the
    /// client supports it, else through the `approvals` tool; unanswered
    /// requests are denied after --approval-timeout.
    #[arg(help_heading = "Approvals", long, value_enum)]
    pub approve: Option<ApproveMode>,
    /// Approve every request of this tool, e.g. write_file, run_command
    /// (repeatable).
    #[arg(help_heading = "Approvals", long = "approve-tool", value_name = "TOOL")]
    pub approve_tools: Vec<String>,
    /// How long a request waits for an answer before it is denied:
    /// seconds, or 90s, 15m.
    #[arg(help_heading = "Approvals", long, default_value = "300", value_name = "DURATION", value_parser = units::parse_duration)]
    pub approval_timeout: Duration,

    /// At most this many children run at once.
    #[arg(help_heading = "Limits", long, default_value_t = 8, value_name = "N")]
    pub max_running: usize,
    /// Worker program to spawn instead of this binary (any protocol-v1 worker).
    #[arg(help_heading = "Sessions and workers", long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
    /// A fixed argument for the worker program (repeatable).
    #[arg(
        help_heading = "Sessions and workers",
        long = "worker-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pub worker_args: Vec<String>,
}

/// The MCP clients `--print-config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// A `claude mcp add` command line for Claude Code.
    Claude,
    /// A `[mcp_servers.bamboo]` table for Codex's config.toml.
    Codex,
    /// An `mcpServers` JSON document (Claude Code's --mcp-config, Claude
    /// Desktop, Cursor and others).
    Json,
}

/// What the flags resolve to, checked before the engine starts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where sessions live.
    pub data_dir: PathBuf,
    /// The children's executor.
    pub executor: ExecutorChoice,
    /// Where the children work, unless they are given their own.
    pub workspace: PathBuf,
    /// Variables passed on purpose to cli programs.
    pub pass_env: Vec<(String, Secret)>,
}

impl McpArgs {
    /// Checks the flags and reads what they point at (keys, workspace).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        if self.max_running == 0 {
            bail!("--max-running must be at least 1");
        }
        if let Some(root) = &self.root {
            if root.trim().is_empty() {
                bail!("--root is empty: give a root session id (bamboo-worker sessions --data-dir DIR lists them)");
            }
        }
        let executor = self.exec.choice()?;
        let workspace = self.exec.workspace()?;
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => default_data_dir()?,
        };
        Ok(Settings {
            data_dir,
            executor,
            workspace,
            pass_env: passed_env(&self.exec.pass_env)?,
        })
    }
}

/// The per-user state directory: sessions outlive any one client process.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(state) => PathBuf::from(state),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local").join("state"),
            None => bail!("neither XDG_STATE_HOME nor HOME is set, so there is no per-user state directory: pass --data-dir DIR"),
        },
    };
    Ok(base.join("bamboo-fleet").join("mcp"))
}
