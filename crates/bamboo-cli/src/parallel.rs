//! The flags `run` shares with GNU parallel and xargs (`-j` is an alias of
//! `--max-running`, in main.rs): retries, halting, a job log, a results
//! directory, output grouping, tags, timestamps and progress. See
//! docs/operations.md ("Like GNU parallel").

use std::path::PathBuf;

use super::halt::{self, Halt};
use super::joblog::Joblog;
use super::results::Results;

/// The GNU-parallel-like flags of `run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ParallelArgs {
    /// Run a child that failed or timed out again, up to N more times (the
    /// same session; pauses of 1 s, 2 s, 4 s ... up to 30 s between tries).
    /// Each try is a note on stderr and a --joblog line.
    #[arg(
        help_heading = "Like GNU parallel",
        long,
        value_name = "N",
        default_value_t = 0
    )]
    pub retries: u32,
    /// Stop early: `now,fail=K` cancels the running children once K have
    /// failed (after their retries); `soon,fail=K` starts no more and lets
    /// the running ones finish; `now,success=K` / `soon,success=K` once K
    /// completed. A halt on failure exits 1, a halt on success exits 0.
    #[arg(help_heading = "Like GNU parallel", long, value_name = "WHEN,fail=K|success=K", value_parser = halt::parse)]
    pub halt: Option<Halt>,
    /// Append one tab-separated line per child and try to FILE (created
    /// anew, with a header): Name, Seq, Starttime (Unix seconds),
    /// JobRuntime (seconds), Status, Exitval (a cli program's exit code, or
    /// -), Worker, Try, Command.
    #[arg(help_heading = "Like GNU parallel", long, value_name = "FILE")]
    pub joblog: Option<PathBuf>,
    /// Write per child DIR/NAME/ with stdout, stderr, result,
    /// events.ndjson and status.json.
    #[arg(help_heading = "Like GNU parallel", long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Print each child's lines together when it ends, instead of as they come.
    #[arg(
        help_heading = "Like GNU parallel",
        long,
        conflicts_with = "line_buffer"
    )]
    pub group: bool,
    /// Print each line as it comes (the default).
    #[arg(help_heading = "Like GNU parallel", long)]
    pub line_buffer: bool,
    /// Start each line with the child's `[name]` (the default).
    #[arg(help_heading = "Like GNU parallel", long, overrides_with = "no_tag")]
    pub tag: bool,
    /// Print the children's lines without the `[name]` prefix.
    #[arg(help_heading = "Like GNU parallel", long, overrides_with = "tag")]
    pub no_tag: bool,
    /// Start each line with the time its event was logged (RFC 3339, UTC).
    #[arg(help_heading = "Like GNU parallel", long)]
    pub timestamps: bool,
    /// Print `ended/total`, rate and ETA on stderr each time a child ends for good
    /// (on a terminal the status area shows it anyway).
    #[arg(help_heading = "Like GNU parallel", long)]
    pub progress: bool,
}

/// What the flags ask of the loop.
#[derive(Debug, Clone, Default)]
pub struct Parallel {
    /// More tries per failed child.
    pub retries: u32,
    /// When to stop early.
    pub halt: Option<Halt>,
    /// Where the job log goes.
    pub joblog: Option<PathBuf>,
    /// Where the per-child results go.
    pub results: Option<PathBuf>,
    /// Each child's lines together.
    pub group: bool,
    /// The `[name]` prefix.
    pub tag: bool,
    /// A time on each line.
    pub timestamps: bool,
    /// A progress line on stderr per ended child.
    pub progress: bool,
}

impl ParallelArgs {
    /// The options these flags give.
    pub fn options(&self) -> Parallel {
        Parallel {
            retries: self.retries,
            halt: self.halt,
            joblog: self.joblog.clone(),
            results: self.results.clone(),
            group: self.group,
            tag: !self.no_tag,
            timestamps: self.timestamps,
            progress: self.progress,
        }
    }
}

/// The files `--joblog` and `--results` write, opened before any child.
#[derive(Debug, Default)]
pub struct Logs {
    /// The open job log.
    pub joblog: Option<Joblog>,
    /// The results directory.
    pub results: Option<Results>,
}

impl Logs {
    /// Creates the job log and the results directory the options name.
    pub fn open(p: &Parallel) -> anyhow::Result<Self> {
        Ok(Self {
            joblog: p.joblog.as_deref().map(Joblog::create).transpose()?,
            results: p.results.as_deref().map(Results::create).transpose()?,
        })
    }
}
