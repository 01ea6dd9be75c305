//! The `cli_adapter` executor: an external agent CLI (`claude -p`, `codex
//! exec`, any script) as the child's engine.
//!
//! - The assignment replaces `{assignment}` in the arguments; when no argument
//!   has the placeholder it is written to the program's stdin, which is then
//!   closed. The working directory is the spec's workspace, when set.
//! - Each stdout line becomes an event as soon as it is written (see
//!   [`output::line_event`]). The result is the `result` of the last
//!   `{"type":"result",...}` line, else stdout, bounded to its last
//!   [`output::MAX_RESULT_BYTES`] bytes behind a truncation marker.
//! - Exit 0 completes; any other exit is an error carrying the exit status and
//!   the tail of stderr ([`STDERR_TAIL_BYTES`]).
//! - The program runs in its own process group, with a unique
//!   [`RUN_MARK_VAR`] in its environment, under a worker that adopts orphans
//!   (see [`crate::proc::tree`]), and in a cgroup v2 leaf of its
//!   own where the worker may create one
//!   ([`crate::proc::cgroup`]). Cancel, a run timeout or a
//!   dropped run stop the group and every descendant (the whole leaf, else
//!   every marked one), `setsid` ones included (SIGTERM, then SIGKILL after
//!   [`crate::proc::KILL_GRACE`]). The run ends when the program
//!   exits: what it left running is killed, and the rest of stdout is read
//!   while it flows (no line for [`OUTPUT_DRAIN`] ends it, [`DRAIN_CAP`] at
//!   most), so a descendant holding it open cannot hold the run and a slow
//!   parent loses no line. A worker killed outright takes its program along (PR_SET_PDEATHSIG).
//! - The environment is the worker's minus secrets, plus only the child
//!   provider's key (see [`crate::env`]).

#[cfg(test)]
mod containment_tests;
pub mod output;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::AgentEvent;
use bamboo_subagent::executor::{
    ApprovalBody, EventSink, Executor, RunContext, RunOutcome, RunRequest,
};
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::env::{child_env, pass_through, ProviderKey};
use super::host::{ask_approval, Approval};
use super::proc::cgroup::Leaf;
use super::proc::tree::RunMark;
use super::proc::{die_with_worker, spawn_contained, RunProcesses};

pub use super::proc::tree::RUN_MARK_VAR;
use output::{read_line_bounded, LineReader, OutputCollector, MAX_LINE_BYTES, MAX_RESULT_BYTES};

/// The placeholder an argument may contain to receive the assignment.
pub const ASSIGNMENT_PLACEHOLDER: &str = "{assignment}";
/// How much of stderr's tail an error carries.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// After the program exited: how long stdout may bring no new line before
/// the rest is given up (an escaped descendant holds it open), and how long
/// stderr is still read. Its last output is already in the pipe, and what it
/// left running is killed first, so the end normally comes at once.
pub const OUTPUT_DRAIN: Duration = Duration::from_millis(500);
/// The longest the rest of stdout is read after the program exited, however
/// steadily it comes (an escaped process writing without end).
pub const DRAIN_CAP: Duration = Duration::from_secs(30);
/// Capacity of the stdout reader: large, so a chatty program costs few
/// reads (never zeroed, so a short run does not pay for it).
const STDOUT_BUFFER: usize = 256 * 1024;

/// Why a `cli_adapter` spec cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliConfigError {
    /// `command` is blank.
    #[error("cli_adapter.command is empty: name the program to run, e.g. \"claude\"")]
    EmptyCommand,
    /// The spec is not a `cli_adapter` spec.
    #[error("executor kind {0:?} is not cli_adapter")]
    WrongKind(&'static str),
}

/// Runs an external program per assignment. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct CliExecutor {
    command: String,
    args: Vec<String>,
    workspace: Option<PathBuf>,
    key: Option<ProviderKey>,
    /// Variables passed on purpose (spec `secrets.pass_env`); `Secret` values.
    passed: std::collections::BTreeMap<String, bamboo_subagent::Secret>,
    run_timeout: Option<Duration>,
    ask_first: bool,
    /// The environment (already stripped of secrets) the child's is derived
    /// from; `None` = the worker's.
    base_env: Option<Vec<(OsString, OsString)>>,
}

impl CliExecutor {
    /// Builds the executor from a `cli_adapter` spec.
    pub fn from_spec(spec: &ProvisionSpec) -> Result<Self, CliConfigError> {
        let ExecutorSpec::CliAdapter { command, args } = &spec.executor else {
            return Err(CliConfigError::WrongKind(spec.executor.kind().wire()));
        };
        if command.trim().is_empty() {
            return Err(CliConfigError::EmptyCommand);
        }
        let key = spec.model.as_ref().and_then(|m| {
            let cred = spec.secrets.credential_for(&m.provider);
            if cred.is_none() {
                tracing::warn!(provider = %m.provider, "no credential for the child's provider; the program gets no API key");
            }
            cred.map(|c| ProviderKey::new(&m.provider, c.api_key.clone()))
        });
        Ok(Self {
            command: command.clone(),
            args: args.clone(),
            workspace: spec.workspace.as_ref().map(PathBuf::from),
            key,
            passed: spec.secrets.pass_env.clone(),
            run_timeout: spec.limits.run_timeout_secs.map(Duration::from_secs),
            ask_first: spec.capabilities.enforce_permissions && !spec.capabilities.bypass,
            base_env: None,
        })
    }

    /// Derives the child's environment from `base` instead of the worker's own
    /// (secrets are still stripped from it). For tests and embedders.
    pub fn with_base_env(mut self, base: Vec<(OsString, OsString)>) -> Self {
        // Stripped now, so the executor never holds (or prints) the secrets.
        self.base_env = Some(child_env(base, None));
        self
    }

    /// The command line as configured (placeholder unexpanded), for approval
    /// questions and error messages.
    pub fn command_line(&self) -> String {
        quote_line(std::iter::once(&self.command).chain(&self.args))
    }

    /// The exact command line a run of `assignment` executes (placeholders
    /// replaced), as the approval question shows it to a human.
    pub fn command_line_for(&self, assignment: &str) -> String {
        command_line_for(&self.command, &self.args, assignment)
    }

    /// The arguments for `assignment`, and whether it must go to stdin instead.
    fn argv(&self, assignment: &str) -> (Vec<String>, bool) {
        argv(&self.args, assignment)
    }

    fn spawn(
        &self,
        assignment: &str,
        mark: &RunMark,
    ) -> Result<(Child, Option<String>, Option<Leaf>), String> {
        if let Some(ws) = &self.workspace {
            if !ws.is_dir() {
                return Err(format!(
                    "cli_adapter workspace {} is not a directory: create it or fix the spec's workspace",
                    ws.display()
                ));
            }
        }
        let (args, via_stdin) = self.argv(assignment);
        let (child, leaf) = spawn_contained(|| self.command(&args, via_stdin, mark)).map_err(|e| {
            format!(
                "could not start cli_adapter program {:?}: {e}: check that it is installed and on PATH",
                self.command
            )
        })?;
        Ok((child, via_stdin.then(|| assignment.to_owned()), leaf))
    }

    /// The program's command: its own process group, the run's mark, the
    /// child environment, and death with the worker.
    fn command(&self, args: &[String], via_stdin: bool, mark: &RunMark) -> Command {
        let mut env = match &self.base_env {
            Some(base) => child_env(base.iter().cloned(), self.key.as_ref()),
            None => child_env(std::env::vars_os(), self.key.as_ref()),
        };
        pass_through(&mut env, &self.passed);
        let mut cmd = Command::new(&self.command);
        cmd.args(args)
            .env_clear()
            .envs(env)
            .stdin(if via_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env(RUN_MARK_VAR, mark.value())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(ws) = &self.workspace {
            cmd.current_dir(ws);
        }
        die_with_worker(&mut cmd);
        cmd
    }

    /// With enforced permissions, asks the host first, unless the run
    /// came approved for this exact command; `Some` ends the run.
    async fn approve(&self, ctx: &RunContext, request: &RunRequest) -> Option<RunOutcome> {
        if !self.ask_first {
            return None;
        }
        let assignment = request.assignment.as_str();
        let body = self.approval_body(assignment);
        // Approved ahead by the parent: no round trip per run.
        if request.approves(&body) {
            return None;
        }
        match ask_approval(ctx, body).await {
            Approval::Granted => None,
            Approval::Cancelled => Some(RunOutcome::cancelled()),
            Approval::Denied(why) => Some(RunOutcome::error(format!(
                "approval denied for cli_adapter command `{}` ({why})",
                self.command_line_for(assignment)
            ))),
        }
    }

    /// What the human is asked: the exact command this run would execute.
    fn approval_body(&self, assignment: &str) -> ApprovalBody {
        let exact = self.command_line_for(assignment);
        ApprovalBody {
            tool_name: "cli_adapter".into(),
            permission_type: "execute".into(),
            question: format!("May this agent run `{exact}`?"),
            resource: exact,
        }
    }

    async fn run_until(
        &self,
        request: RunRequest,
        ctx: &RunContext,
        deadline: Option<Instant>,
    ) -> RunOutcome {
        if let Some(refused) = self.approve(ctx, &request).await {
            return refused;
        }
        let mark = RunMark::fresh();
        let (mut child, stdin_text, leaf) = match self.spawn(&request.assignment, &mark) {
            Ok(c) => c,
            Err(e) => return RunOutcome::error(e),
        };
        let procs = RunProcesses::of(&child, mark, leaf);
        if let (Some(text), Some(mut stdin)) = (stdin_text, child.stdin.take()) {
            // A separate task, so a program that reads stdin late cannot block
            // us from reading its stdout. A closed pipe is the program's choice.
            tokio::spawn(async move {
                let _ = stdin.write_all(text.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        let stderr = child
            .stderr
            .take()
            .map(|e| tokio::spawn(stderr_lines(e, ctx.events.clone())));
        let Some(stdout) = child.stdout.take() else {
            return RunOutcome::error("cli_adapter: the program's stdout was not captured");
        };
        let abort = ctx.cancel.child_token();
        let mut collected = OutputCollector::new(MAX_RESULT_BYTES);
        let finished = {
            let program = watch_program(
                &mut child,
                stdout,
                &mut collected,
                &ctx.events,
                &abort,
                &procs,
            );
            tokio::select! {
                biased;
                s = stop_reason(&abort, deadline) => Err(s),
                status = program => Ok(status),
            }
        };
        match finished {
            Err(stop) => {
                procs.terminate(&mut child).await;
                match stop {
                    Stop::Cancelled => RunOutcome::cancelled(),
                    Stop::TimedOut => RunOutcome::error(format!(
                        "cli_adapter run timed out after {} s running `{}`: raise the run timeout (`run --run-timeout`, limits.run_timeout_secs in a spec) or shorten the assignment",
                        self.run_timeout.map_or(0, |d| d.as_secs()),
                        self.command_line()
                    )),
                }
            }
            Ok(status) => {
                procs.finish().await;
                let tail = stderr_tail(stderr).await;
                self.conclude(collected, status, &tail, ctx).await
            }
        }
    }

    async fn conclude(
        &self,
        collected: OutputCollector,
        status: std::io::Result<ExitStatus>,
        stderr_tail: &str,
        ctx: &RunContext,
    ) -> RunOutcome {
        if ctx.cancel.is_cancelled() {
            return RunOutcome::cancelled();
        }
        match status {
            Ok(s) if s.success() => {
                if !collected.saw_complete()
                    && ctx
                        .events
                        .emit(AgentEvent::Complete { usage: None })
                        .await
                        .is_err()
                {
                    return RunOutcome::cancelled();
                }
                RunOutcome::completed(collected.into_result())
            }
            Ok(s) => {
                let mut msg = format!("cli_adapter program `{}` failed ({s})", self.command_line());
                if stderr_tail.trim().is_empty() {
                    msg.push_str("; it wrote nothing to stderr");
                } else {
                    msg.push_str("; stderr tail:\n");
                    msg.push_str(stderr_tail.trim_end());
                }
                RunOutcome::error(msg)
            }
            Err(e) => RunOutcome::error(format!(
                "could not wait for cli_adapter program `{}`: {e}",
                self.command_line()
            )),
        }
    }
}

enum Stop {
    Cancelled,
    TimedOut,
}

/// Resolves when the run must stop before its program ends.
async fn stop_reason(abort: &CancellationToken, deadline: Option<Instant>) -> Stop {
    match deadline {
        Some(d) => tokio::select! {
            _ = abort.cancelled() => Stop::Cancelled,
            _ = tokio::time::sleep_until(d) => Stop::TimedOut,
        },
        None => {
            abort.cancelled().await;
            Stop::Cancelled
        }
    }
}

/// Passes each stderr line on as a `stderr` event as it comes (a program's
/// warnings and progress are shown whether it succeeds or not), and returns
/// the tail ([`STDERR_TAIL_BYTES`]) for a failure's error. Lines longer than
/// [`MAX_LINE_BYTES`] are passed on in pieces.
async fn stderr_lines(stream: tokio::process::ChildStderr, sink: EventSink) -> String {
    let mut reader = BufReader::new(stream);
    let mut tail: Vec<u8> = Vec::new();
    let mut line = Vec::new();
    let mut sink = Some(sink);
    loop {
        line.clear();
        match read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        tail.extend_from_slice(&line);
        // Trimmed at twice the cap, so trimming stays amortised O(1).
        if tail.len() > 2 * STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(s) = &sink {
            let event = AgentEvent::Stderr {
                line: text.to_owned(),
            };
            // A run that ended takes no more events; the tail is still kept.
            if s.emit(event).await.is_err() {
                sink = None;
            }
        }
    }
    if tail.len() > STDERR_TAIL_BYTES {
        tail.drain(..tail.len() - STDERR_TAIL_BYTES);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// The stderr tail once the program exited; a leftover still holding
/// stderr gets [`OUTPUT_DRAIN`], not the run.
async fn stderr_tail(reader: Option<tokio::task::JoinHandle<String>>) -> String {
    match reader {
        Some(task) => tokio::time::timeout(OUTPUT_DRAIN, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    }
}

#[async_trait]
impl Executor for CliExecutor {
    async fn run(&self, request: RunRequest, ctx: RunContext) -> RunOutcome {
        let deadline = self.run_timeout.map(|d| Instant::now() + d);
        self.run_until(request, &ctx, deadline).await
    }
}

/// Streams stdout until the program exits, then ends what it left running
/// and reads the rest of stdout: to its end, which comes as soon as the pipe
/// is empty (every writer is gone), or until no line has come for
/// [`OUTPUT_DRAIN`] (a process that escaped the sweep still holds it open),
/// at most [`DRAIN_CAP`] in all. An idle bound, not a total one: a slow
/// parent makes the reading slow, and a line written before the program
/// exited is never dropped for that.
async fn watch_program(
    child: &mut Child,
    stdout: ChildStdout,
    collected: &mut OutputCollector,
    sink: &EventSink,
    abort: &CancellationToken,
    procs: &RunProcesses,
) -> std::io::Result<ExitStatus> {
    let lines = std::sync::atomic::AtomicU64::new(0);
    let mut pump = std::pin::pin!(pump_stdout(stdout, collected, sink, abort, &lines));
    let (status, drained) = tokio::select! {
        status = child.wait() => (status, false),
        () = &mut pump => (child.wait().await, true),
    };
    // Left running, they would keep the pipes open (and outlive the run).
    procs.kill_leftovers();
    if !drained {
        drain(pump, &lines).await;
    }
    status
}

/// Waits for `pump` to reach the end of stdout while it makes progress.
async fn drain(
    mut pump: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    lines: &std::sync::atomic::AtomicU64,
) {
    let cap = tokio::time::sleep(DRAIN_CAP);
    tokio::pin!(cap);
    let mut seen = lines.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        tokio::select! {
            () = &mut pump => return,
            () = &mut cap => break,
            () = tokio::time::sleep(OUTPUT_DRAIN) => {
                let now = lines.load(std::sync::atomic::Ordering::Relaxed);
                if now == seen {
                    break;
                }
                seen = now;
            }
        }
    }
    tracing::warn!(
        "a process the cli_adapter program left behind still holds its stdout; the run ends without it"
    );
}

/// Streams stdout lines as events into `collected`, counting them in
/// `lines`; a closed sink trips `abort` (the parent is gone, so the run
/// stops).
async fn pump_stdout(
    stdout: ChildStdout,
    collected: &mut OutputCollector,
    sink: &EventSink,
    abort: &CancellationToken,
    lines: &std::sync::atomic::AtomicU64,
) {
    let mut reader = LineReader::new(stdout, STDOUT_BUFFER);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match reader.next_line(&mut line, MAX_LINE_BYTES).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the cli_adapter program's stdout failed");
                break;
            }
        }
        lines.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let event = collected.push_line(&line);
        if sink.emit(event).await.is_err() {
            abort.cancel();
            break;
        }
    }
}

/// `argv` as one line, arguments that are empty or hold whitespace quoted.
/// The exact command line a run of `assignment` executes with `command` and
/// `args` (placeholders replaced; "(assignment on stdin)" when no argument
/// takes it), as the approval request shows it. One function, so the front
/// door recognises the program its user named by the same text.
pub fn command_line_for(command: &str, args: &[String], assignment: &str) -> String {
    let command = command.to_owned();
    let (args, via_stdin) = argv(args, assignment);
    let line = quote_line(std::iter::once(&command).chain(&args));
    if via_stdin {
        format!("{line} (assignment on stdin)")
    } else {
        line
    }
}

/// `args` for `assignment`, and whether it must go to stdin instead.
fn argv(args: &[String], assignment: &str) -> (Vec<String>, bool) {
    let via_arg = args.iter().any(|a| a.contains(ASSIGNMENT_PLACEHOLDER));
    let args = args
        .iter()
        .map(|a| a.replace(ASSIGNMENT_PLACEHOLDER, assignment))
        .collect();
    (args, !via_arg)
}

fn quote_line<'a>(argv: impl Iterator<Item = &'a String>) -> String {
    argv.map(|a| {
        if a.is_empty() || a.contains(char::is_whitespace) {
            format!("{a:?}")
        } else {
            a.clone()
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// Builds the registry entry for a `cli_adapter` spec.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, CliConfigError> {
    Ok(Arc::new(CliExecutor::from_spec(spec)?))
}
