//! `bamboo-worker`: a Bamboo fleet actor worker, and the command-line front door.
//!
//! With no subcommand it is a worker: it reads one ProvisionSpec from stdin
//! and serves the protocol. `bamboo-worker run "assignment" ...` runs
//! assignments on fresh workers and prints their streams.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bamboo_worker::{front, serve};
use clap::{Parser, Subcommand};

/// A Bamboo fleet actor worker.
///
/// Without a subcommand, reads one JSON ProvisionSpec from stdin (the parent
/// writes it and closes the pipe), binds a WebSocket listener on 127.0.0.1,
/// registers in the spec's fabric_dir and serves runs. A bad spec exits 2.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Longest wait for the spec on stdin, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    stdin_timeout_ms: u64,
    /// How long a one-shot worker waits for its connection, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    accept_timeout_secs: u64,
    /// Keep running when the parent process dies (default: exit within ~1 s).
    #[arg(long)]
    no_parent_watch: bool,
    /// Largest WebSocket frame accepted; a larger one closes that connection.
    #[arg(long, default_value_t = bamboo_subagent::transport::DEFAULT_MAX_FRAME_BYTES, value_name = "BYTES")]
    max_frame_bytes: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run each assignment on its own worker and print the streams.
    ///
    /// Exits 0 when every run completed, 1 otherwise.
    Run {
        /// Assignments, one child each.
        #[arg(required = true, value_name = "ASSIGNMENT")]
        assignments: Vec<String>,
        /// Worker program to spawn instead of this binary.
        #[arg(long, value_name = "PATH")]
        worker_bin: Option<PathBuf>,
        /// A fixed argument for the worker program (repeatable).
        #[arg(long = "worker-arg", value_name = "ARG", allow_hyphen_values = true)]
        worker_args: Vec<String>,
        /// How long a worker may take to register, in seconds.
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        register_timeout_secs: u64,
    },
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match cli.command {
        None => worker_mode(&cli),
        Some(Command::Run {
            assignments,
            worker_bin,
            worker_args,
            register_timeout_secs,
        }) => {
            let options = front::RunOptions {
                assignments,
                worker_bin,
                worker_args,
                register_timeout: Duration::from_secs(register_timeout_secs),
            };
            match run_front(options) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("bamboo-worker run: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn worker_mode(cli: &Cli) -> ExitCode {
    if std::io::stdin().is_terminal() {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        eprintln!("\nbamboo-worker: expected a ProvisionSpec on stdin (it is a terminal); see protocol.md section 2");
        return ExitCode::from(2);
    }
    let settings = serve::ServeSettings {
        stdin_timeout: Duration::from_millis(cli.stdin_timeout_ms),
        accept_timeout: Duration::from_secs(cli.accept_timeout_secs),
        watch_parent: !cli.no_parent_watch,
        max_frame_bytes: cli.max_frame_bytes,
    };
    ExitCode::from(serve::run(settings) as u8)
}

fn run_front(options: front::RunOptions) -> anyhow::Result<bool> {
    let total = options.assignments.len();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let completed = runtime.block_on(front::run(options))?;
    println!("{completed} of {total} runs completed");
    Ok(completed == total)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
