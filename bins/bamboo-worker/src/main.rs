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
use bamboo_subagent::spec::ExecutorKind;
use bamboo_subagent::Secret;
use bamboo_worker::executors::env::provider_key_var;
use bamboo_worker::executors::registry::ExecutorFlag;
use bamboo_worker::front::{ApproveMode, ExecutorChoice, Fallback, Provider};
use bamboo_worker::{front, serve};
use clap::{Parser, Subcommand};

mod logging;

/// A Bamboo fleet actor worker, and the `run` and `sessions` front door.
///
/// `bamboo-worker run "assignment" ...` runs each assignment as a child on a
/// pooled worker process and prints what they do (see `run --help`).
/// `bamboo-worker sessions --data-dir DIR` lists what a `run --data-dir DIR`
/// kept, and `show ID` prints one session (see `sessions --help`).
///
/// Without a subcommand it is a worker: it reads one JSON ProvisionSpec from
/// stdin (the parent writes it and closes the pipe), binds a WebSocket
/// listener on 127.0.0.1, registers in the spec's fabric_dir and serves runs.
/// A bad spec exits 2.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    worker: WorkerFlags,
}

/// Flags of worker mode (no subcommand): plumbing the engine sets.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Worker mode (plumbing; the engine passes these)")]
struct WorkerFlags {
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
    /// Run each assignment as a child through the engine and show what they do.
    ///
    /// Every assignment becomes one named child session; children run on
    /// pooled worker processes (this binary unless --worker-bin says otherwise).
    /// On a terminal: a colour per child, text as lines, one line per tool
    /// call, a live status area, and a summary table at the end.
    ///
    /// Exit codes: 0 every child completed, 1 some did not (or stdout closed
    /// early), 2 usage error, 130 interrupted (SIGINT/SIGTERM; a second one
    /// stops at once).
    ///
    /// Examples:
    ///   bamboo-worker run "hello world" "second task"
    ///   bamboo-worker run --executor cli "fix the bug" -- claude -p {assignment}
    ///   bamboo-worker run --json --from tasks.txt > events.ndjson
    ///   OPENAI_API_KEY=... bamboo-worker run --executor llm --model openai/gpt-4o-mini "list the files"
    ///   GITHUB_TOKEN=... bamboo-worker run --executor cli --pass-env GITHUB_TOKEN "open a PR" -- claude -p {assignment}
    ///   bamboo-worker run --data-dir ./runs --resume <ROOT>   (rerun what a killed run left unfinished)
    #[command(verbatim_doc_comment)]
    Run(Box<RunArgs>),
    /// List the sessions kept in a data directory, or show one.
    ///
    /// Opens the data directory a `run --data-dir DIR` used (it must not be
    /// in use by a running engine) and prints each root session with its
    /// children (title, status, id, first line of the last error), nested
    /// children indented. `show ID` prints one session's transcript, status
    /// and logged events. Exits 0, or 2 when the directory or session cannot
    /// be read.
    ///
    /// Examples:
    ///   bamboo-worker sessions --data-dir ./runs
    ///   bamboo-worker sessions --data-dir ./runs show 5f0c2d1e-...
    ///   bamboo-worker sessions --data-dir ./runs --json
    #[command(verbatim_doc_comment)]
    Sessions(SessionsArgs),
    /// Internal: removes a `run` temporary directory once stdin closes.
    #[command(name = "__reap-tempdir", hide = true)]
    ReapTempdir {
        /// The directory.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct SessionsArgs {
    /// The data directory a `run --data-dir DIR` kept its sessions in.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Print JSON (one document) instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<SessionsCommand>,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Every root session and its children, as a tree (the default).
    List,
    /// One session: its messages, status and logged events.
    Show {
        /// The session id (a root or a child), as `sessions` lists it.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    // --- Assignments ---
    /// Assignments, one child each.
    #[arg(help_heading = "Assignments", value_name = "ASSIGNMENT")]
    assignments: Vec<String>,
    /// An assignment (repeatable); may start with `-`.
    #[arg(
        help_heading = "Assignments",
        long = "assignment",
        value_name = "TEXT",
        allow_hyphen_values = true
    )]
    more_assignments: Vec<String>,
    /// Read one assignment per line from FILE (`-`: stdin); empty lines are skipped.
    #[arg(help_heading = "Assignments", long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// A short name for the child of the same position (repeatable; order:
    /// positional assignments, then --assignment, then --from lines)
    /// [default: the assignment's first words].
    #[arg(help_heading = "Assignments", long = "name", value_name = "NAME")]
    names: Vec<String>,

    // --- Executor ---
    /// Which executor the children run.
    #[arg(help_heading = "Executor", long, value_enum, default_value = "echo")]
    executor: ExecutorFlag,
    /// cli: the agent program to run (or give it after `--`).
    #[arg(help_heading = "Executor", long, value_name = "PROG")]
    command: Option<String>,
    /// cli: an argument for the program (repeatable); `{assignment}` is replaced
    /// by the assignment, otherwise the assignment arrives on its stdin.
    #[arg(
        help_heading = "Executor",
        long = "arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    args: Vec<String>,
    /// llm (required): the model as provider/model, e.g. openai/gpt-4o-mini.
    /// cli (optional): the provider whose API key the program gets in its
    /// environment, under its usual variable; without it the program gets no key.
    #[arg(help_heading = "Executor", long, value_name = "PROVIDER/MODEL")]
    model: Option<String>,
    /// llm: base URL of an OpenAI-compatible API [default: https://api.openai.com/v1].
    #[arg(help_heading = "Executor", long, value_name = "URL")]
    base_url: Option<String>,
    /// llm, cli: environment variable holding the API key [default: the provider's
    /// usual one, e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, else
    /// <PROVIDER>_API_KEY]. The key travels to workers only in their stdin spec,
    /// never in their argv or env; a cli program gets it in its own env.
    #[arg(help_heading = "Executor", long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Working directory of the children [default: the current directory].
    #[arg(help_heading = "Executor", long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// cli: pass the environment variable NAME from here to the cli program,
    /// on purpose (repeatable).
    ///
    /// A cli program starts with the worker's environment minus (1) every
    /// variable whose name contains KEY, TOKEN, SECRET, PASSWORD, PASSWD or
    /// CREDENTIAL, in any case, and (2) every model-provider variable, by
    /// prefix: OPENAI_, ANTHROPIC_, GEMINI_, GOOGLE_API, GOOGLE_GENAI,
    /// VERTEX, AZURE_OPENAI, AWS_, MISTRAL_, GROQ_, DEEPSEEK_, OPENROUTER_,
    /// COHERE_, XAI_, TOGETHER_, FIREWORKS_, PERPLEXITY_, HF_, HUGGINGFACE,
    /// OLLAMA_, BAMBOO_. `--pass-env NAME` puts NAME back with its value from
    /// this environment, even when it matches those rules. The value travels
    /// in the worker's stdin spec, never in argv or a worker's environment.
    /// A NAME that is not set here is refused (exit 2).
    #[arg(help_heading = "Executor", long = "pass-env", value_name = "NAME")]
    pass_env: Vec<String>,

    // --- Approvals ---
    /// How gated actions are answered. The program you name for --executor cli
    /// is approved by naming it (unless `none`). [default: ask on a terminal;
    /// without one, deny with a note saying how to allow]
    #[arg(help_heading = "Approvals", long, value_enum)]
    approve: Option<ApproveMode>,
    /// Approve every request of this tool, e.g. write_file, run_command,
    /// spawn_subagent (repeatable).
    #[arg(help_heading = "Approvals", long = "approve-tool", value_name = "TOOL")]
    approve_tools: Vec<String>,

    // --- Limits ---
    /// At most this many children run at once.
    #[arg(help_heading = "Limits", long, default_value_t = 8, value_name = "N")]
    max_running: usize,
    /// Per-child cap on a run's total time: seconds, or 90s, 15m, 1h [default: 1h].
    #[arg(help_heading = "Limits", long, value_name = "DURATION", value_parser = front::units::parse_duration)]
    run_timeout: Option<Duration>,
    /// Per-child cap on time without any event: seconds, or 90s, 15m [default: 15m].
    #[arg(help_heading = "Limits", long, value_name = "DURATION", value_parser = front::units::parse_duration)]
    idle_timeout: Option<Duration>,

    // --- Output ---
    /// Print NDJSON: one object per event, then a summary object (docs/operations.md).
    #[arg(help_heading = "Output", long, conflicts_with = "quiet")]
    json: bool,
    /// Print the results only.
    #[arg(help_heading = "Output", short, long)]
    quiet: bool,

    // --- Sessions and workers ---
    /// Keep sessions in this directory [default: a temporary one, removed at exit].
    #[arg(help_heading = "Sessions and workers", long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Rerun the unfinished children of root session ROOT (needs --data-dir).
    ///
    /// Reruns every child of ROOT whose status is pending (queued when the
    /// previous run died), running or error (including children orphaned by
    /// a crash), cancelled or timeout; completed and skipped children are
    /// left alone. Each rerun starts again from its last user message.
    /// Assignments given too become new children of ROOT. The executor is
    /// not stored with the session: give the same --executor flags (and
    /// program after `--`) as the first run. `bamboo-worker sessions
    /// --data-dir DIR` lists the root ids.
    #[arg(
        help_heading = "Sessions and workers",
        long,
        value_name = "ROOT",
        requires = "data_dir"
    )]
    resume: Option<String>,
    /// Worker program to spawn instead of this binary (any protocol-v1 worker).
    #[arg(help_heading = "Sessions and workers", long, value_name = "PATH")]
    worker_bin: Option<PathBuf>,
    /// A fixed argument for the worker program (repeatable).
    #[arg(
        help_heading = "Sessions and workers",
        long = "worker-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    worker_args: Vec<String>,

    /// cli: the program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROG ARGS")]
    trailing: Vec<String>,
}

fn main() -> ExitCode {
    logging::init();
    let cli = Cli::parse();
    match cli.command {
        None => worker_mode(&cli.worker),
        Some(Command::Run(args)) => run_command(*args),
        Some(Command::Sessions(args)) => sessions(args),
        Some(Command::ReapTempdir { dir }) => ExitCode::from(front::reaper::reap(&dir)),
    }
}

fn run_command(args: RunArgs) -> ExitCode {
    let options = match run_options(args) {
        Ok(o) => o,
        Err(e) => {
            front::out::to_stderr(&format!("bamboo-worker run: {e:#}"));
            return ExitCode::from(front::exit::USAGE);
        }
    };
    match run_front(options) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            front::out::to_stderr(&format!("bamboo-worker run: {e:#}"));
            ExitCode::from(front::exit::SOME_FAILED)
        }
    }
}

fn run_options(a: RunArgs) -> anyhow::Result<front::RunOptions> {
    let executor = executor_choice(&a)?;
    if a.max_running == 0 {
        bail!("--max-running must be at least 1");
    }
    let workspace = match &a.workspace {
        Some(w) => w.clone(),
        None => std::env::current_dir()
            .context("cannot read the current directory; pass --workspace")?,
    };
    if !workspace.is_dir() {
        bail!("--workspace {} is not a directory", workspace.display());
    }
    let assignments = all_assignments(&a)?;
    let names = front::names::assign(&assignments, &a.names).map_err(anyhow::Error::msg)?;
    let output = match (a.json, a.quiet) {
        (true, _) => front::OutputMode::Json,
        (_, true) => front::OutputMode::Quiet,
        _ => front::OutputMode::Human,
    };
    Ok(front::RunOptions {
        assignments,
        names,
        executor,
        workspace: Some(workspace),
        approvals: approvals(&a),
        worker_bin: a.worker_bin,
        worker_args: a.worker_args,
        max_running: a.max_running,
        data_dir: a.data_dir,
        run_timeout: a.run_timeout,
        idle_timeout: a.idle_timeout,
        output,
        pass_env: passed_env(&a.pass_env)?,
        resume: a.resume,
    })
}

/// Positional assignments, then `--assignment`s, then `--from` lines.
fn all_assignments(a: &RunArgs) -> anyhow::Result<Vec<String>> {
    let mut all = a.assignments.clone();
    all.extend(a.more_assignments.iter().cloned());
    if let Some(from) = &a.from {
        let text = if from.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .context("cannot read assignments from stdin (--from -)")?
        } else {
            std::fs::read_to_string(from).with_context(|| {
                format!("cannot read assignments from --from {}", from.display())
            })?
        };
        all.extend(
            text.lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    if all.is_empty() && a.resume.is_none() {
        bail!("no assignments: give them as arguments, with --assignment TEXT, or one per line with --from FILE");
    }
    Ok(all)
}

fn approvals(a: &RunArgs) -> front::Approvals {
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let (all, fallback) = match a.approve {
        Some(ApproveMode::All) => (Some(true), Fallback::Deny),
        Some(ApproveMode::None) => (Some(false), Fallback::Deny),
        Some(ApproveMode::Ask) => (None, Fallback::Ask),
        None if terminal => (None, Fallback::Ask),
        None => (None, Fallback::Deny),
    };
    front::Approvals {
        all,
        tools: a.approve_tools.iter().cloned().collect(),
        fallback,
    }
}

/// The `--pass-env` variables with their values from this environment.
fn passed_env(names: &[String]) -> anyhow::Result<Vec<(String, Secret)>> {
    names
        .iter()
        .map(|name| {
            if name.is_empty() || name.contains(['=', '\0']) {
                bail!("--pass-env {name:?} is not a variable name: give the bare NAME, without `=value`");
            }
            match std::env::var_os(name) {
                None => bail!("--pass-env {name}: the variable is not set in this environment; export it first, or drop the flag"),
                Some(v) => match v.into_string() {
                    Ok(v) => Ok((name.clone(), Secret::new(v))),
                    Err(_) => bail!("--pass-env {name}: its value is not valid UTF-8; only UTF-8 values can be passed"),
                },
            }
        })
        .collect()
}

fn sessions(a: SessionsArgs) -> ExitCode {
    let options = match a.data_dir {
        Some(data_dir) => front::sessions::SessionsOptions {
            data_dir,
            json: a.json,
            show: match a.command {
                Some(SessionsCommand::Show { id }) => Some(id),
                Some(SessionsCommand::List) | None => None,
            },
        },
        None => {
            eprintln!("bamboo-worker sessions: --data-dir DIR is required: name the directory a `run --data-dir DIR` kept its sessions in");
            return ExitCode::from(2);
        }
    };
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(front::sessions::run(options)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bamboo-worker sessions: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn executor_choice(a: &RunArgs) -> anyhow::Result<ExecutorChoice> {
    let cli_flags = a.command.is_some() || !a.args.is_empty() || !a.trailing.is_empty();
    if cli_flags && a.executor.0 != ExecutorKind::CliAdapter {
        bail!("--command, --arg and `-- PROG` apply only to --executor cli");
    }
    let model_flags = a.model.is_some() || a.api_key_env.is_some();
    if model_flags && a.executor.0 == ExecutorKind::Echo {
        bail!("--model and --api-key-env apply only to --executor llm or cli");
    }
    if a.base_url.is_some() && a.executor.0 != ExecutorKind::BambooRuntime {
        bail!("--base-url applies only to --executor llm");
    }
    if !a.pass_env.is_empty() && a.executor.0 != ExecutorKind::CliAdapter {
        bail!("--pass-env applies only to --executor cli (only cli programs get an environment from it)");
    }
    match a.executor.0 {
        ExecutorKind::Echo => Ok(ExecutorChoice::Echo),
        ExecutorKind::CliAdapter => {
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
        ExecutorKind::BambooRuntime => {
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

fn worker_mode(cli: &WorkerFlags) -> ExitCode {
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

fn run_front(options: front::RunOptions) -> anyhow::Result<u8> {
    // The temp dir (and its reaper) exists before anything can be written to it.
    let mut temp = match &options.data_dir {
        Some(_) => None,
        None => Some(front::reaper::TempData::create()?),
    };
    let data_dir = match (&options.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path(),
        (None, None) => bail!("no data directory"),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(front::run(options, data_dir));
    if let Some(t) = temp.as_mut() {
        t.remove_now();
    }
    match &outcome {
        // A second interrupt: leave at once; workers notice their parent is gone.
        Ok(o) if o.hard => runtime.shutdown_background(),
        // A prompt may still block on stdin: do not wait for it.
        _ => runtime.shutdown_timeout(Duration::from_millis(200)),
    }
    Ok(outcome?.exit_code)
}
