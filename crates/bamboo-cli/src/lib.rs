//! The front doors of Bamboo fleet, which the `bamboo-worker` binary
//! dispatches to: `run` (the command line: builds an engine, creates one
//! named child per assignment under a root session, prints the root's event
//! log as it grows, for people or as NDJSON with `--json`, answers or asks
//! about approvals, and ends with a summary), `sessions` ([`sessions`]) and
//! the MCP server ([`mcp`]).
//!
//! Modules of `run`: [`names`] (child names), [`units`] (durations),
//! [`when`] (times for `sessions list --since/--until`),
//! [`children`] (per-child state), [`render`] and [`style`] (human output),
//! [`json`] (NDJSON), [`status`] (live status area), [`summary`] (final
//! table), [`approve`] and [`prompt`] (approvals), [`signals`], [`reaper`]
//! (temp dir), [`out`] (stdout that survives a closed pipe), `feed` (engine
//! streams), `setup` (engine), `drive` (the loop). Like GNU parallel:
//! [`parallel`] (the flags), [`retry`], [`halt`], [`joblog`], [`results`],
//! [`group`], [`progress`].

pub mod approve;
pub mod children;
mod drive;
mod feed;
pub mod follow;
pub mod group;
pub mod halt;
pub mod ids;
pub mod joblog;
pub mod json;
pub mod mcp;
pub mod names;
pub mod out;
pub mod pager;
pub mod parallel;
pub mod preflight;
pub mod progress;
pub mod prompt;
pub mod reaper;
pub mod recorded;
pub mod render;
pub mod results;
pub mod resume;
pub mod retry;
pub mod sessions;
mod setup;
pub mod signals;
pub mod status;
pub mod style;
pub mod summary;
pub mod transcript;
pub mod units;
pub mod when;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bamboo_subagent::Secret;

pub use approve::{ApproveMode, Fallback};
pub use bamboo_executors::choice::{ExecutorChoice, Provider};

/// How gated actions are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    /// `--approve all|none`: answer everything this way.
    pub all: Option<bool>,
    /// `--approve-tool`: tools approved for the whole run.
    pub tools: HashSet<String>,
    /// What happens to the other requests.
    pub fallback: Fallback,
}

/// How output looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// For people: tagged lines, status area on a terminal, summary.
    Human,
    /// Results only.
    Quiet,
    /// NDJSON events and a summary object.
    Json,
}

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// One child per assignment.
    pub assignments: Vec<String>,
    /// One unique display name per assignment.
    pub names: Vec<String>,
    /// The children's executor.
    pub executor: ExecutorChoice,
    /// Working directory of the children.
    pub workspace: Option<PathBuf>,
    /// How gated actions are answered.
    pub approvals: Approvals,
    /// Worker program; this binary when absent.
    pub worker_bin: Option<PathBuf>,
    /// Fixed arguments for the worker program.
    pub worker_args: Vec<String>,
    /// At most this many children run at once.
    pub max_running: usize,
    /// Where sessions are kept; a temporary directory when absent.
    pub data_dir: Option<PathBuf>,
    /// Per-child watchdog total-time cap.
    pub run_timeout: Option<Duration>,
    /// Per-child watchdog idle cap.
    pub idle_timeout: Option<Duration>,
    /// Per-child cap on model rounds of one run (`--max-turns`).
    pub max_rounds: Option<u32>,
    /// Every child a read-only reviewer (`--read-only`).
    pub read_only: bool,
    /// Per-child token budget (`--max-tokens`).
    pub max_tokens: Option<u64>,
    /// Per-child cost budget in USD (`--max-cost`).
    pub max_cost_usd: Option<f64>,
    /// Each child in its own git worktree (`--worktree`).
    pub worktree: bool,
    /// The root's project key (`--project`); default: the workspace's path.
    pub project: Option<String>,
    /// Output form.
    pub output: OutputMode,
    /// Variables passed on purpose to cli programs (`--pass-env`).
    pub pass_env: Vec<(String, Secret)>,
    /// Root session whose unfinished children are rerun (`--resume`).
    pub resume: Option<String>,
    /// Run the children on this resident worker instead of local processes.
    pub remote: Option<RemoteTarget>,
    /// Run the children on a pool on NATS instead of local workers.
    pub pool: Option<PoolTarget>,
    /// The executor flags, recorded with a new root for `--resume`.
    pub executor_record: recorded::Recorded,
    /// Retries, halting, job log, results, grouping, tags, timestamps,
    /// progress (the GNU parallel flags).
    pub parallel: parallel::Parallel,
}

/// A resident worker (`bamboo-worker serve`) `run --remote` sends children to.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    /// `wss://host:port` (or `ws://` on loopback).
    pub endpoint: String,
    /// Its bearer token, read from `--token-file`.
    pub token: Secret,
    /// Extra trusted CA certificates (DER), from `--ca-cert`.
    pub ca_certs: Vec<Vec<u8>>,
    /// Children on it at once (`--remote-max`).
    pub max_connections: usize,
}

/// `run --nats URL --pool NAME`: where pool children go.
#[derive(Debug, Clone)]
pub struct PoolTarget {
    /// The server and login.
    pub nats: bamboo_pool::NatsOptions,
    /// The pool.
    pub pool: String,
}

/// Exit codes of `run` (documented in docs/operations.md).
pub mod exit {
    /// Every child completed.
    pub const ALL_COMPLETED: u8 = 0;
    /// Some child did not complete (or stdout closed before the end).
    pub const SOME_FAILED: u8 = 1;
    /// Bad usage.
    pub const USAGE: u8 = 2;
    /// Interrupted by SIGINT or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The process exit code.
    pub exit_code: u8,
    /// A second interrupt: exit now, skip the graceful engine shutdown.
    pub hard: bool,
}

/// Runs every assignment with data under `data_dir`.
pub async fn run(options: RunOptions, data_dir: PathBuf) -> anyhow::Result<Outcome> {
    let (notes_tx, notes_rx) = tokio::sync::mpsc::unbounded_channel();
    let named = match &options.executor {
        ExecutorChoice::Cli { command, args, .. } if options.approvals.all.is_none() => {
            approve::NamedProgram::new(command, args, &options.assignments)
        }
        _ => approve::NamedProgram::none(),
    };
    let policy = Arc::new(approve::FrontPolicy::new(
        named,
        options.approvals.all,
        options.approvals.tools.clone(),
        options.approvals.fallback,
        notes_tx.clone(),
    ));
    // The endpoint or pool, checked once before any child exists.
    if let Some(remote) = &options.remote {
        preflight::remote(remote).await?;
    }
    let pool = match &options.pool {
        Some(target) => {
            let settings = bamboo_pool::ClientSettings::default();
            let (client, note) = preflight::pool(target, settings).await?;
            if let Some(note) = note {
                out::to_stderr(&format!("bamboo-worker run: {note}"));
            }
            Some(client)
        }
        None => None,
    };
    // A job log or results directory that cannot be written is said before
    // any child runs.
    let logs = parallel::Logs::open(&options.parallel)
        .map_err(|e| preflight::Misconfigured(format!("{e:#}; no child was started")))?;
    let engine = setup::build_engine(&options, data_dir.clone(), policy.clone(), pool).await?;
    let outcome = drive::drive(
        &engine, &options, &data_dir, policy, notes_tx, notes_rx, logs,
    )
    .await;
    if !matches!(outcome, Ok(Outcome { hard: true, .. })) {
        // Bounded: a stuck worker must not keep the front door alive.
        let _ = tokio::time::timeout(Duration::from_secs(10), engine.shutdown()).await;
    }
    // What a worker killed outright left in its cgroup leaf (F12).
    bamboo_executors::proc::cgroup::sweep_stale_leaves().await;
    outcome
}
