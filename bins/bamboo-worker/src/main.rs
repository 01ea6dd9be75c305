//! `bamboo-worker`: a Bamboo fleet actor worker, and the command-line front door.
//!
//! With no subcommand it is a worker: it reads one ProvisionSpec from stdin
//! and serves the protocol. `bamboo-worker run "assignment" ...` runs
//! assignments on fresh workers and prints their streams.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bamboo_domain::ModelRef;
use bamboo_subagent::Secret;
use bamboo_worker::executors::env::provider_key_var;
use bamboo_worker::front::{ApproveMode, ExecutorChoice, Provider};
use bamboo_worker::{front, resident, serve};
use clap::{Parser, Subcommand};

mod logging;

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
    /// After this long without a run or lease renewal in flight, give memory
    /// back: unmap the program's clean pages and trim the heap (the next run
    /// maps them back, a few tenths of a millisecond once). 0 turns it off.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    idle_trim_ms: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run each assignment as a child through the engine and print the streams.
    ///
    /// Every assignment becomes one child session; children run on pooled
    /// worker processes (this binary unless --worker-bin says otherwise).
    /// Exits 0 when every run completed, 1 otherwise.
    ///
    /// Examples:
    ///   bamboo-worker run "hello world" "second task"
    ///   bamboo-worker run --executor cli "fix the bug" -- claude -p {assignment}
    ///   OPENAI_API_KEY=... bamboo-worker run --executor llm --model openai/gpt-4o-mini "list the files"
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Serve as a resident worker that engines reach over the network (F11).
    ///
    /// Example:
    ///   bamboo-worker serve --listen 0.0.0.0:7300 --token-file /etc/bamboo/token \
    ///     --tls-cert cert.pem --tls-key key.pem --max-runs 8
    #[command(verbatim_doc_comment)]
    Serve(resident::ServeArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Assignments, one child each.
    #[arg(required = true, value_name = "ASSIGNMENT")]
    assignments: Vec<String>,
    /// Which executor the children run.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Echo)]
    executor: ExecutorKind,
    /// cli: the agent program to run (or give it after `--`).
    #[arg(long, value_name = "PROG")]
    command: Option<String>,
    /// cli: an argument for the program (repeatable); `{assignment}` is replaced
    /// by the assignment, otherwise the assignment arrives on its stdin.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// llm (required): the model as provider/model, e.g. openai/gpt-4o-mini.
    /// cli (optional): the provider whose API key the program gets in its
    /// environment, under its usual variable; without it the program gets no key.
    #[arg(long, value_name = "PROVIDER/MODEL")]
    model: Option<String>,
    /// llm: base URL of an OpenAI-compatible API [default: https://api.openai.com/v1].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// llm, cli: environment variable holding the API key [default: the provider's
    /// usual one, e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, else
    /// <PROVIDER>_API_KEY]. The key travels to workers only in their stdin spec,
    /// never in their argv or env; a cli program gets it in its own env.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Working directory of the children [default: the current directory].
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// How gated actions (running a program, writing files) are answered
    /// [default: ask on a terminal, none otherwise].
    #[arg(long, value_enum)]
    approve: Option<ApproveMode>,
    /// At most this many children run at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_running: usize,
    /// Keep sessions in this directory [default: a temporary one, removed at exit].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Worker program to spawn instead of this binary (any protocol-v1 worker).
    #[arg(long, value_name = "PATH")]
    worker_bin: Option<PathBuf>,
    /// A fixed argument for the worker program (repeatable).
    #[arg(long = "worker-arg", value_name = "ARG", allow_hyphen_values = true)]
    worker_args: Vec<String>,
    /// cli: the program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROG ARGS")]
    trailing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExecutorKind {
    /// Echo the assignment (no model needed).
    Echo,
    /// A command-line agent (claude -p, codex exec, any script).
    Cli,
    /// The built-in agent loop over an OpenAI-compatible endpoint.
    Llm,
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    match cli.command {
        None => worker_mode(&cli),
        Some(Command::Serve(args)) => match resident::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bamboo-worker serve: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Command::Run(args)) => match run_options(args).and_then(run_front) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("bamboo-worker run: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_options(a: RunArgs) -> anyhow::Result<front::RunOptions> {
    let executor = executor_choice(&a)?;
    if a.max_running == 0 {
        bail!("--max-running must be at least 1");
    }
    let workspace = match a.workspace {
        Some(w) => w,
        None => std::env::current_dir()
            .context("cannot read the current directory; pass --workspace")?,
    };
    if !workspace.is_dir() {
        bail!("--workspace {} is not a directory", workspace.display());
    }
    let approve = a.approve.unwrap_or(if std::io::stdin().is_terminal() {
        ApproveMode::Ask
    } else {
        ApproveMode::None
    });
    Ok(front::RunOptions {
        assignments: a.assignments,
        executor,
        workspace: Some(workspace),
        approve,
        worker_bin: a.worker_bin,
        worker_args: a.worker_args,
        max_running: a.max_running,
        data_dir: a.data_dir,
    })
}

fn executor_choice(a: &RunArgs) -> anyhow::Result<ExecutorChoice> {
    let cli_flags = a.command.is_some() || !a.args.is_empty() || !a.trailing.is_empty();
    if cli_flags && a.executor != ExecutorKind::Cli {
        bail!("--command, --arg and `-- PROG` apply only to --executor cli");
    }
    let model_flags = a.model.is_some() || a.api_key_env.is_some();
    if model_flags && a.executor == ExecutorKind::Echo {
        bail!("--model and --api-key-env apply only to --executor llm or cli");
    }
    if a.base_url.is_some() && a.executor != ExecutorKind::Llm {
        bail!("--base-url applies only to --executor llm");
    }
    match a.executor {
        ExecutorKind::Echo => Ok(ExecutorChoice::Echo),
        ExecutorKind::Cli => {
            let (command, args) = match (&a.command, a.trailing.split_first()) {
                (Some(_), Some(_)) => bail!("give the program either with --command or after `--`, not both"),
                (Some(c), None) => (c.clone(), a.args.clone()),
                (None, Some((c, rest))) if a.args.is_empty() => (c.clone(), rest.to_vec()),
                (None, Some(_)) => bail!("--arg goes with --command; after `--` put the arguments themselves"),
                (None, None) => bail!("--executor cli needs a program: --command PROG [--arg ARG]... or `-- PROG ARGS...`"),
            };
            if a.api_key_env.is_some() && a.model.is_none() {
                bail!("--api-key-env needs --model provider/model to say whose key it is");
            }
            let provider = a.model.as_deref().map(|raw| provider(a, raw)).transpose()?;
            Ok(ExecutorChoice::Cli {
                command,
                args,
                provider,
            })
        }
        ExecutorKind::Llm => {
            let raw = a
                .model
                .as_deref()
                .context("--executor llm needs --model provider/model")?;
            Ok(ExecutorChoice::Llm {
                provider: provider(a, raw)?,
            })
        }
    }
}

/// The model `raw` and its key, read from `--api-key-env` or the provider's
/// usual variable.
fn provider(a: &RunArgs, raw: &str) -> anyhow::Result<Provider> {
    let model = ModelRef::parse(raw).with_context(|| {
        format!("--model {raw:?} is not provider/model (e.g. openai/gpt-4o-mini)")
    })?;
    let var = a
        .api_key_env
        .clone()
        .unwrap_or_else(|| provider_key_var(&model.provider));
    let key = std::env::var(&var).ok().filter(|k| !k.trim().is_empty()).with_context(|| {
        format!("environment variable {var} is not set: export the API key there, or name another variable with --api-key-env")
    })?;
    Ok(Provider {
        model,
        base_url: a.base_url.clone(),
        api_key: Secret::new(key),
    })
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
        idle_trim: (cli.idle_trim_ms > 0).then(|| Duration::from_millis(cli.idle_trim_ms)),
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
