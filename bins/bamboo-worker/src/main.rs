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
use bamboo_cli::{self as front, mcp};
use bamboo_cli::{ApproveMode, Fallback};
use bamboo_executors::flags::{passed_env, ExecutorArgs};
use bamboo_subagent::spec::ExecutorKind;
use bamboo_worker::{resident, serve};
use clap::builder::TypedValueParser as _;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

mod join;
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
    /// Exit codes: 0 every child completed (or --halt ...,success=K was
    /// reached), 1 some did not (or --halt ...,fail=K stopped the run, or
    /// stdout closed early), 2 usage error, 130 interrupted (SIGINT/SIGTERM;
    /// a second one stops at once).
    ///
    /// Examples:
    ///   bamboo-worker run "hello world" "second task"
    ///   bamboo-worker run --executor cli "fix the bug" -- claude -p {assignment}
    ///   bamboo-worker run --json --from tasks.txt > events.ndjson
    ///   OPENAI_API_KEY=... bamboo-worker run --executor llm --model openai/gpt-4o-mini "list the files"
    ///   GITHUB_TOKEN=... bamboo-worker run --executor cli --pass-env GITHUB_TOKEN "open a PR" -- claude -p {assignment}
    ///   bamboo-worker run --data-dir ./runs --resume <ROOT>   (rerun what a killed run left unfinished)
    ///   bamboo-worker run -j 4 --retries 2 --halt now,fail=3 --joblog jobs.tsv --from tasks.txt
    #[command(verbatim_doc_comment)]
    Run(Box<RunArgs>),
    /// List the sessions kept in a data directory, or show one.
    ///
    /// Opens the data directory a `run --data-dir DIR` used (read-only while
    /// a run still holds it) and prints each root session with its
    /// children (title, status, id, first line of the last error), nested
    /// children indented; `list --status/--parent/--since/--until` print the
    /// sessions they select as a flat list. `show ID` prints one session's transcript, status
    /// and logged events. Exits 0, or 2 when the directory or session cannot
    /// be read.
    ///
    /// Examples:
    ///   bamboo-worker sessions --data-dir ./runs
    ///   bamboo-worker sessions --data-dir ./runs show 5f0c2d1e-...
    ///   bamboo-worker sessions --data-dir ./runs --json
    ///   bamboo-worker sessions --data-dir ./runs list --status error --since 1d
    #[command(verbatim_doc_comment)]
    Sessions(SessionsArgs),
    /// Serve as a resident worker that engines reach over the network.
    ///
    /// Example:
    ///   bamboo-worker serve --listen 0.0.0.0:7300 --token-file /etc/bamboo/token \
    ///     --tls-cert cert.pem --tls-key key.pem --max-runs 8
    #[command(verbatim_doc_comment)]
    Serve(Box<resident::ServeArgs>),
    /// Join a worker pool on NATS JetStream and serve its runs (dials out; no
    /// listening port). SIGTERM: stop taking runs, finish them, leave, exit 0.
    ///
    /// Example:
    ///   bamboo-worker join --nats nats://bus:4222 --pool gpu --token-file /run/secrets/nats --max-runs 4
    #[command(verbatim_doc_comment)]
    Join(Box<join::JoinArgs>),
    /// Serve the fleet to an MCP client (Claude Code, Codex, ...): the
    /// client becomes the parent of sub-agents through the SubAgent, wait and
    /// approvals tools.
    ///
    /// Speaks MCP on stdin/stdout (the client starts it), or streamable HTTP
    /// with --listen and a bearer token. Sessions are kept in --data-dir, so
    /// they survive client restarts. Exits 2 on a usage error.
    ///
    /// Examples:
    ///   claude mcp add bamboo -- bamboo-worker mcp
    ///   bamboo-worker mcp --print-config claude
    ///   bamboo-worker mcp --executor cli --approve-tool cli_adapter -- claude -p {assignment}
    ///   bamboo-worker mcp --listen 127.0.0.1:7400 --token-file ~/.config/bamboo/mcp-token
    #[command(verbatim_doc_comment)]
    Mcp(Box<mcp::McpArgs>),
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
    /// List only the sessions of this project: a directory (its canonical
    /// path is the key, as `run` derives it from --workspace) or a key as
    /// `run --project` gave it.
    #[arg(long, value_name = "PROJECT", global = true)]
    project: Option<String>,
    /// Print straight to stdout, never through $PAGER (text is paged only
    /// when stdout is a terminal).
    #[arg(long, global = true)]
    no_pager: bool,
    #[command(subcommand)]
    command: Option<SessionsCommand>,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Every root session and its children, as a tree (the default).
    ///
    /// With --status, --parent, --since or --until: only the sessions they
    /// select (all must hold, with --project too), one line each, oldest
    /// first: title, status, id, parent (first 8 characters of its id; `-`
    /// for a root), creation time (UTC) and the first line of the last
    /// error. They are read from the store's indices a page at a time.
    ///
    /// Examples:
    ///   bamboo-worker sessions --data-dir ./runs list --status error
    ///   bamboo-worker sessions --data-dir ./runs list --parent 5f0c2d1e --status completed
    ///   bamboo-worker sessions --data-dir ./runs list --since 2h --limit 20
    ///   bamboo-worker sessions --data-dir ./runs list --since 2026-12-06 --until 2026-12-06 --json
    #[command(verbatim_doc_comment)]
    List {
        /// Only the N most recent roots, each with its N oldest children
        /// (and theirs); the rest is counted, not listed. With a filter:
        /// the N most recent sessions it selects, and how many older ones
        /// match.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Only children whose run status is STATUS (roots have none), e.g.
        /// `--status error`.
        #[arg(
            long,
            value_name = "STATUS",
            value_parser = clap::builder::PossibleValuesParser::new(
                bamboo_domain::ChildStatus::ALL.iter().map(|s| s.as_str())
            )
            .try_map(|s| s.parse::<bamboo_domain::ChildStatus>())
        )]
        status: Option<bamboo_domain::ChildStatus>,
        /// Only the children of session ID (its direct children), given as
        /// the listing shows it or a unique start of it, e.g.
        /// `--parent 5f0c2d1e`. An unknown id is refused (exit 2).
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
        /// Only sessions created at TIME or later. TIME is an RFC 3339 time
        /// (`2026-12-06T10:00:00Z`; no offset means UTC), a date
        /// (`2026-12-06`: from its start, UTC) or an age (`30m`, `2h`,
        /// `7d`, `1w`, `1h30m`: that long ago), e.g. `--since 2h`.
        #[arg(long, value_name = "TIME", value_parser = front::when::parse)]
        since: Option<front::when::When>,
        /// Only sessions created before TIME (same forms as --since; a date
        /// includes the whole day), e.g. `--until 2026-12-06T12:00:00Z`.
        #[arg(long, value_name = "TIME", value_parser = front::when::parse)]
        until: Option<front::when::When>,
    },
    /// One session: its messages, status and logged events.
    Show {
        /// The session id (a root or a child), as `sessions` lists it, or a
        /// unique start of it (e.g. its first 8 characters).
        id: String,
        /// Keep printing its events as they are logged (while a `run`
        /// holds the directory) until it and its children stop running.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Remove the git worktree a `run --worktree` child kept (its branch and
    /// commits stay; a branch with no commit is deleted too).
    RemoveWorktree {
        /// The child's session id, or a unique start of it.
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
    #[command(flatten)]
    exec: ExecutorArgs,

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
    /// At most this many children run at once (`-j`/`--jobs` as in GNU parallel).
    #[arg(
        help_heading = "Limits",
        short = 'j',
        long,
        visible_alias = "jobs",
        default_value_t = 8,
        value_name = "N"
    )]
    max_running: usize,
    /// Per-child cap on a run's total time: seconds, or 90s, 15m, 1h [default: 1h].
    #[arg(help_heading = "Limits", long, value_name = "DURATION", value_parser = front::units::parse_duration)]
    run_timeout: Option<Duration>,
    /// Per-child cap on time without any event: seconds, or 90s, 15m [default: 15m].
    #[arg(help_heading = "Limits", long, value_name = "DURATION", value_parser = front::units::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Per-child cap on model rounds of one run (--executor llm; claude: its
    /// own --max-turns) [default: 20 for llm].
    #[arg(help_heading = "Limits", long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_turns: Option<u32>,
    /// Make every child a read-only reviewer: it reads and runs read-only
    /// commands, its writes are refused (--executor llm or echo).
    #[arg(help_heading = "Limits", long)]
    read_only: bool,
    /// Budget per child: most tokens (in, out and cache) over its runs;
    /// past it the child is cancelled, the error naming the budget.
    #[arg(help_heading = "Limits", long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_tokens: Option<u64>,
    /// Budget per child: most cost in US dollars over its runs (where the
    /// executor reports cost, e.g. claude); past it the child is cancelled.
    #[arg(help_heading = "Limits", long, value_name = "USD", value_parser = parse_cost)]
    max_cost: Option<f64>,
    /// Run each child in a git worktree of its own, on a new branch
    /// `bamboo/<name>` from HEAD; its changes are committed there and the
    /// summary lists branch, commit and files (the workspace must be in a
    /// git repository).
    #[arg(long)]
    worktree: bool,

    // --- Output ---
    /// Print NDJSON: one object per event, then a summary object (docs/operations.md).
    #[arg(help_heading = "Output", long, conflicts_with = "quiet")]
    json: bool,
    /// Print the results only.
    #[arg(help_heading = "Output", short, long)]
    quiet: bool,

    // --- Like GNU parallel ---
    #[command(flatten)]
    parallel: front::parallel::ParallelArgs,

    // --- Sessions and workers ---
    /// Keep sessions in this directory [default: a temporary one, removed at exit].
    #[arg(help_heading = "Sessions and workers", long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The project the sessions belong to (`sessions list --project` finds
    /// them by it) [default: the workspace's canonical path].
    #[arg(help_heading = "Sessions and workers", long, value_name = "KEY")]
    project: Option<String>,
    /// Rerun the unfinished children of root session ROOT (needs --data-dir);
    /// a unique start of the id is enough.
    ///
    /// Reruns every child of ROOT whose status is pending (queued when the
    /// previous run died), running or error (including children orphaned by
    /// a crash), cancelled or timeout; completed and skipped children are
    /// left alone. Each rerun starts again from its last user message.
    /// Assignments given too become new children of ROOT. Children the
    /// first run never created (a full disk) are created. The executor
    /// flags (--executor, the program, --model, --base-url, --api-key-env,
    /// --workspace, --pass-env, --max-turns, --read-only) are recorded with
    /// the root and reused; one given again must match the first run's, or
    /// the resume is refused (exit 2). `bamboo-worker sessions --data-dir
    /// DIR` lists the root ids.
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
    /// Run the children on the resident worker at URL (`bamboo-worker serve`)
    /// instead of local worker processes; needs --token-file. Its own flags
    /// decide the executor, so --executor and its flags do not apply.
    #[arg(
        help_heading = "Sessions and workers",
        long,
        value_name = "wss://HOST:PORT",
        requires = "token_file"
    )]
    remote: Option<String>,
    /// --remote: file holding the resident worker's bearer token (mode 600).
    #[arg(
        help_heading = "Sessions and workers",
        long,
        value_name = "FILE",
        requires = "remote"
    )]
    token_file: Option<PathBuf>,
    /// --remote: a PEM file of CA certificates to trust for its wss:// certificate.
    #[arg(
        help_heading = "Sessions and workers",
        long,
        value_name = "PEM",
        requires = "remote"
    )]
    ca_cert: Option<PathBuf>,
    /// --remote: at most this many children on the resident worker at once
    /// (its `serve --max-runs`); beyond it children wait here. A worker that
    /// is busy anyway (other clients) is asked again until a slot frees.
    #[arg(
        help_heading = "Sessions and workers",
        long,
        value_name = "N",
        default_value_t = 4,
        requires = "remote",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    remote_max: u32,
    /// A fixed argument for the worker program (repeatable).
    #[arg(
        help_heading = "Sessions and workers",
        long = "worker-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    worker_args: Vec<String>,

    // --- Pool on NATS ---
    /// Run the children on the workers of a pool on NATS JetStream (started
    /// with `bamboo-worker join`) instead of local processes.
    #[arg(
        help_heading = "Pool on NATS",
        long,
        value_name = "URL",
        requires = "pool"
    )]
    nats: Option<String>,
    /// The pool the children run on (with --nats).
    #[arg(
        help_heading = "Pool on NATS",
        long,
        value_name = "NAME",
        requires = "nats"
    )]
    pool: Option<String>,
    /// A file whose first line is the NATS token.
    #[arg(
        help_heading = "Pool on NATS",
        long,
        value_name = "FILE",
        requires = "nats"
    )]
    nats_token_file: Option<PathBuf>,
    /// A NATS credentials file (user JWT and seed).
    #[arg(
        help_heading = "Pool on NATS",
        long,
        value_name = "FILE",
        requires = "nats"
    )]
    nats_creds: Option<PathBuf>,
    /// PEM file of CA certificates for the NATS server's TLS certificate.
    #[arg(
        help_heading = "Pool on NATS",
        long,
        value_name = "PEM",
        requires = "nats"
    )]
    nats_tls_ca: Option<PathBuf>,
}

fn main() -> ExitCode {
    logging::init();
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| usage_error(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        None => worker_mode(&cli.worker),
        Some(Command::Run(args)) => {
            bamboo_worker::memory::tune_allocator();
            let given = matches
                .subcommand_matches("run")
                .map(given_flags)
                .unwrap_or_default();
            run_command(*args, &given)
        }
        Some(Command::Sessions(args)) => sessions(args),
        Some(Command::Serve(args)) => match resident::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bamboo-worker serve: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Command::Join(args)) => join::main(*args),
        Some(Command::Mcp(args)) => match mcp::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bamboo-worker mcp: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Command::ReapTempdir { dir }) => ExitCode::from(front::reaper::reap(&dir)),
    }
}

/// Exits on a command-line error. clap's tip for an argument that starts
/// with `-` is "use `-- -x`", which for `run` would start a cli program
/// named `-x`: `run` says to use `--assignment` instead.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let is_run = std::env::args().nth(1).as_deref() == Some("run");
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    // A misspelled flag keeps clap's "a similar argument exists".
    let similar = match e.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(s)) => format!("  tip: a similar argument exists: '{s}'\n"),
        _ => String::new(),
    };
    match (e.kind(), arg) {
        (ErrorKind::UnknownArgument, Some(arg)) if is_run => {
            let usage = Cli::command()
                .find_subcommand_mut("run")
                .map(|c| c.render_usage().to_string())
                .unwrap_or_default()
                .replacen("Usage: run", "Usage: bamboo-worker run", 1);
            front::out::to_stderr(&format!(
                "error: unexpected argument '{arg}' found\n\n{similar}  tip: an assignment that starts with '-' is given with --assignment: \
                 bamboo-worker run --assignment '{arg}'\n  (after `--` come a cli program and its arguments)\n\n{usage}\n\nFor more information, try '--help'."
            ));
            std::process::exit(i32::from(front::exit::USAGE));
        }
        _ => e.exit(),
    }
}

/// The executor flags the `run` command line really carries (a default is
/// not a flag given).
fn given_flags(m: &ArgMatches) -> Vec<front::recorded::Field> {
    use front::recorded::Field;
    let on_line = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    Field::ALL
        .into_iter()
        .filter(|f| match f {
            Field::Executor => on_line("executor"),
            Field::Program => on_line("command") || on_line("args") || on_line("trailing"),
            Field::Model => on_line("model"),
            Field::BaseUrl => on_line("base_url"),
            Field::ApiKeyEnv => on_line("api_key_env"),
            Field::Workspace => on_line("workspace"),
            Field::PassEnv => on_line("pass_env"),
            Field::MaxTurns => on_line("max_turns"),
            Field::ReadOnly => on_line("read_only"),
            Field::AgentBin => on_line("agent_bin"),
            Field::PermissionMode => on_line("permission_mode"),
        })
        .collect()
}

/// The executor flags of `a` as a record (the workspace absolute).
fn recorded(a: &RunArgs) -> anyhow::Result<front::recorded::Recorded> {
    let program = match (&a.exec.command, a.exec.trailing.is_empty()) {
        (Some(c), _) => std::iter::once(c.clone())
            .chain(a.exec.args.iter().cloned())
            .collect(),
        (None, false) => a.exec.trailing.clone(),
        (None, true) => Vec::new(),
    };
    let executor = clap::ValueEnum::to_possible_value(&a.exec.executor)
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    Ok(front::recorded::Recorded {
        executor,
        program,
        model: a.exec.model.clone(),
        base_url: a.exec.base_url.clone(),
        api_key_env: a.exec.api_key_env.clone(),
        workspace: Some(a.exec.workspace()?.to_string_lossy().into_owned()),
        pass_env: a.exec.pass_env.clone(),
        max_turns: a.max_turns,
        read_only: a.read_only,
        agent_bin: a
            .exec
            .agent_bin
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        permission_mode: a.exec.permission_mode.clone(),
    })
}

/// `--resume ROOT`: the flags of the first run, as recorded with ROOT, for
/// every executor flag not given again; one given again must match.
fn resume_flags(
    a: &mut RunArgs,
    given: &[front::recorded::Field],
) -> anyhow::Result<front::recorded::Recorded> {
    use front::recorded::Recorded;
    let mine = recorded(a)?;
    let (Some(given_root), Some(dir)) = (&a.resume, &a.data_dir) else {
        return Ok(mine);
    };
    if !dir.join("sessions").is_dir() {
        bail!(
            "--resume {given_root}: {} holds no sessions: give the --data-dir the first run used",
            dir.display()
        );
    }
    let ids = front::ids::stored(dir)?;
    let root = front::ids::resolve(given_root, ids.iter().map(String::as_str), dir)
        .with_context(|| format!("--resume {given_root}"))?;
    a.resume = Some(root.clone());
    let root = &root;
    let session = bamboo_engine::store::FileStore::peek(dir, root)
        .with_context(|| format!("--resume {root}: cannot read that session"))?;
    let Some(session) = session else {
        // The engine says so, with the hint to list the roots.
        return Ok(mine);
    };
    let Some(first) = Recorded::from_metadata(&session.metadata)
        .map_err(|e| anyhow::anyhow!("--resume {root}: {e}"))?
    else {
        if given.is_empty() {
            bail!("--resume {root}: this root does not record how its children ran (an older version made it): give the first run's --executor flags (and program after `--`) again");
        }
        return Ok(mine);
    };
    let merged = Recorded::resume(&first, &mine, |f| given.contains(&f))
        .map_err(|e| anyhow::anyhow!("--resume {root}: {e}"))?;
    apply_recorded(a, &merged)?;
    Ok(merged)
}

/// Sets `a`'s executor flags to `r`.
fn apply_recorded(a: &mut RunArgs, r: &front::recorded::Recorded) -> anyhow::Result<()> {
    a.exec.executor = clap::ValueEnum::from_str(&r.executor, false)
        .map_err(|e| anyhow::anyhow!("the recorded executor {:?} is unknown: {e}", r.executor))?;
    a.exec.command = None;
    a.exec.args = Vec::new();
    a.exec.trailing = r.program.clone();
    a.exec.model = r.model.clone();
    a.exec.base_url = r.base_url.clone();
    a.exec.api_key_env = r.api_key_env.clone();
    a.exec.workspace = r.workspace.as_ref().map(PathBuf::from);
    a.exec.pass_env = r.pass_env.clone();
    a.max_turns = r.max_turns;
    a.read_only = r.read_only;
    a.exec.agent_bin = r.agent_bin.as_ref().map(PathBuf::from);
    a.exec.permission_mode = r.permission_mode.clone();
    Ok(())
}

fn run_command(args: RunArgs, given: &[front::recorded::Field]) -> ExitCode {
    let options = match run_options(args, given) {
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
            // A setup that cannot work is a usage error, not a failed task.
            if e.downcast_ref::<front::preflight::Misconfigured>()
                .is_some()
            {
                ExitCode::from(front::exit::USAGE)
            } else {
                ExitCode::from(front::exit::SOME_FAILED)
            }
        }
    }
}

fn run_options(
    mut a: RunArgs,
    given: &[front::recorded::Field],
) -> anyhow::Result<front::RunOptions> {
    let executor_record = resume_flags(&mut a, given)?;
    let executor = a.exec.choice()?;
    let remote = remote_target(&a)?;
    if a.max_running == 0 {
        bail!("--max-running (-j) must be at least 1");
    }
    let workspace = a.exec.workspace()?;
    if a.exec.executor.0 == ExecutorKind::CliAdapter {
        if a.read_only {
            bail!("--read-only cannot be enforced on --executor cli (the program decides what it writes): use --executor llm, or drop --read-only");
        }
        if a.max_turns.is_some() {
            bail!("--max-turns is not yet supported for --executor cli: use --run-timeout to bound the program, or drop --max-turns");
        }
    }
    if matches!(
        a.exec.executor.0,
        ExecutorKind::ClaudeCode | ExecutorKind::Codex
    ) && a.read_only
    {
        bail!("--read-only cannot be enforced on --executor claude or codex (the agent decides what it writes): use --permission-mode plan for claude, or --executor llm");
    }
    if a.exec.executor.0 == ExecutorKind::Codex && a.max_turns.is_some() {
        bail!("--max-turns is not supported for --executor codex (codex exec has no turn limit): use --run-timeout, or drop --max-turns");
    }
    if a.project.as_deref().is_some_and(|p| p.trim().is_empty()) {
        bail!(
            "--project is blank: give a project key, or leave it out to use the workspace's path"
        );
    }
    let assignments = all_assignments(&a)?;
    let names = front::names::assign(&assignments, &a.names).map_err(anyhow::Error::msg)?;
    let output = match (a.json, a.quiet) {
        (true, _) => front::OutputMode::Json,
        (_, true) => front::OutputMode::Quiet,
        _ => front::OutputMode::Human,
    };
    let pool = pool_target(&a)?;
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
        max_rounds: a.max_turns,
        read_only: a.read_only,
        max_tokens: a.max_tokens,
        max_cost_usd: a.max_cost,
        worktree: a.worktree,
        project: a.project,
        output,
        pass_env: passed_env(&a.exec.pass_env)?,
        resume: a.resume,
        remote,
        pool,
        executor_record,
        parallel: a.parallel.options(),
    })
}

/// `--max-cost`: a positive number of US dollars, `$` allowed (`0.50`, `$2`).
fn parse_cost(raw: &str) -> Result<f64, String> {
    let n: f64 = raw
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("{raw:?} is not an amount of US dollars: give e.g. 0.50 or $2"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("{raw:?} must be more than 0 US dollars"));
    }
    Ok(n)
}

/// The resident worker of `--remote`, its token and CA certificates.
fn remote_target(a: &RunArgs) -> anyhow::Result<Option<front::RemoteTarget>> {
    let (Some(endpoint), Some(token_file)) = (&a.remote, &a.token_file) else {
        return Ok(None);
    };
    if !(endpoint.starts_with("wss://") || endpoint.starts_with("ws://")) {
        bail!("--remote {endpoint:?} is not a wss://HOST:PORT (or ws://) URL");
    }
    if a.read_only || a.max_turns.is_some() {
        bail!("with --remote the resident worker's own flags decide its limits: drop --read-only and --max-turns here");
    }
    if a.exec.executor.0 != ExecutorKind::Echo || !a.exec.pass_env.is_empty() {
        bail!("with --remote the resident worker's own flags decide the executor: drop --executor and --pass-env here, give them to `bamboo-worker serve`");
    }
    let ca_certs = match &a.ca_cert {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            bamboo_subagent::resident::tls::root_certs(&pem)
                .with_context(|| format!("--ca-cert {}", path.display()))?
        }
    };
    Ok(Some(front::RemoteTarget {
        endpoint: endpoint.clone(),
        token: bamboo_subagent::token_file::read_token_file(token_file)?,
        ca_certs,
        max_connections: a.remote_max as usize,
    }))
}

/// `--nats URL --pool NAME` and the NATS login, when given.
fn pool_target(a: &RunArgs) -> anyhow::Result<Option<front::PoolTarget>> {
    let (Some(url), Some(pool)) = (&a.nats, &a.pool) else {
        return Ok(None);
    };
    let nats = join::nats_options(
        url,
        a.nats_token_file.as_deref(),
        a.nats_creds.as_deref(),
        a.nats_tls_ca.as_deref(),
    )?;
    Ok(Some(front::PoolTarget {
        nats,
        pool: bamboo_pool::PoolName::new(pool)?.to_string(),
    }))
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
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(str::to_owned),
        );
    }
    if let Some(i) = all.iter().position(|a| a.trim().is_empty()) {
        bail!(
            "assignment {} is empty: give each child something to do",
            i + 1
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

fn sessions(a: SessionsArgs) -> ExitCode {
    let options = match a.data_dir {
        Some(data_dir) => front::sessions::SessionsOptions {
            data_dir,
            json: a.json,
            project: a.project,
            follow: matches!(a.command, Some(SessionsCommand::Show { follow: true, .. })),
            pager: !a.no_pager,
            show: match &a.command {
                Some(SessionsCommand::Show { id, .. }) => Some(id.clone()),
                Some(SessionsCommand::List { .. } | SessionsCommand::RemoveWorktree { .. })
                | None => None,
            },
            limit: match &a.command {
                Some(SessionsCommand::List { limit, .. }) => limit.map(|n| n as usize),
                _ => None,
            },
            filter: match &a.command {
                Some(SessionsCommand::List {
                    status,
                    parent,
                    since,
                    until,
                    ..
                }) => front::sessions::Filter {
                    status: *status,
                    parent: parent.clone(),
                    since: *since,
                    until: *until,
                },
                _ => front::sessions::Filter::default(),
            },
            remove_worktree: match a.command {
                Some(SessionsCommand::RemoveWorktree { id }) => Some(id),
                _ => None,
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
