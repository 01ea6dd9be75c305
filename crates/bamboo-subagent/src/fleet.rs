//! Spawning workers (F1-F3): start the worker program with fixed arguments,
//! provision it over stdin, wait for its record in the fabric, hand back a
//! handle that kills the process when dropped.
//!
//! Every local worker gets a fresh random bearer token unless the spec already
//! carries one, so no other local process can drive it (protocol.md 4.4).
//! Secret-looking environment variables are not passed on to workers.
//!
//! Finding the record: our worker prints one line to stdout once its record is
//! published, which wakes the wait at once; the record itself is still read
//! from the fabric, and a worker that prints nothing (the reference) is found
//! by polling every millisecond.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::fabric::Fabric;
use crate::record::AgentRecord;
use crate::secret::Secret;
use crate::spec::ProvisionSpec;
use crate::transport::client::{connect, connect_with, ClientOptions, Connection};
use crate::transport::TransportError;

/// How many of a worker's last stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// The worker program and its fixed arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerCommand {
    /// Path of the worker binary.
    pub program: PathBuf,
    /// Fixed arguments; nothing per-child and nothing secret.
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// A command with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
        }
    }
}

/// Spawning a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The program could not be started.
    #[error("cannot start worker program {program}: {source} (check the path and that it is executable)")]
    Start {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the spec to the worker's stdin failed.
    #[error("cannot provision worker {pid}: writing the spec to its stdin failed: {source}{tail}")]
    Provision {
        /// The worker's pid.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
        /// Last stderr lines.
        tail: StderrTail,
    },
    /// The worker exited before registering.
    #[error("worker {pid} exited with {status} before registering in the fabric{tail}")]
    ExitedEarly {
        /// The worker's pid.
        pid: u32,
        /// Its exit status.
        status: ExitStatus,
        /// Last stderr lines.
        tail: StderrTail,
    },
    /// The worker did not register in time and was killed.
    #[error("worker {pid} did not register in {dir} within {waited:?}; it was killed{tail}")]
    RegisterTimeout {
        /// The worker's pid.
        pid: u32,
        /// The fabric directory.
        dir: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Last stderr lines.
        tail: StderrTail,
    },
    /// The OS gave no random bytes for the token.
    #[error("cannot generate a worker token: {0}")]
    Token(String),
    /// The spec could not be serialized.
    #[error("cannot serialize the provision spec: {0}")]
    Spec(String),
}

/// The last lines a worker wrote to stderr, shown after an error message.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Vec<String>);

impl std::fmt::Display for StderrTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.0.is_empty() {
            write!(f, "; worker stderr: {}", self.0.join(" | "))?;
        }
        Ok(())
    }
}

type SharedTail = Arc<Mutex<VecDeque<String>>>;

fn snapshot(tail: &SharedTail) -> StderrTail {
    StderrTail(
        tail.lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default(),
    )
}

/// A worker the parent can drive: a local process it owns (killed on drop), or
/// a remote resident worker (F2).
#[derive(Debug)]
pub struct WorkerHandle {
    endpoint: String,
    token: Option<Secret>,
    child: Option<Child>,
    pid: Option<u32>,
    record: Option<AgentRecord>,
    stderr_tail: SharedTail,
    fabric: Option<Fabric>,
}

impl Drop for WorkerHandle {
    /// The process is killed by `kill_on_drop`; a killed worker cannot
    /// withdraw its own record, so the parent does it.
    fn drop(&mut self) {
        if self.child.is_some() {
            self.withdraw_record();
        }
    }
}

impl WorkerHandle {
    /// A handle for an already-running remote worker: no process, kill is a
    /// no-op, pid is none, and it never reports itself alive.
    pub fn remote(endpoint: impl Into<String>, token: Option<Secret>) -> Self {
        Self {
            endpoint: endpoint.into(),
            token,
            child: None,
            pid: None,
            record: None,
            stderr_tail: SharedTail::default(),
            fabric: None,
        }
    }

    /// The worker's WebSocket endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The process id of a local worker.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The record the worker published, for a local worker.
    pub fn record(&self) -> Option<&AgentRecord> {
        self.record.as_ref()
    }

    /// True while the local process runs (non-blocking, F3).
    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills a local worker, reaps it and withdraws its record (a killed
    /// worker cannot); a no-op for a remote one.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
            self.withdraw_record();
        }
    }

    /// Removes this worker's record, unless it now belongs to another process.
    fn withdraw_record(&self) {
        let (Some(fabric), Some(record)) = (&self.fabric, &self.record) else {
            return;
        };
        let ours = fabric
            .resolve(&record.agent_id)
            .is_none_or(|r| r.pid == record.pid);
        if ours {
            let _ = fabric.withdraw(&record.agent_id);
        }
    }

    /// The last lines the worker wrote to stderr.
    pub fn stderr_tail(&self) -> StderrTail {
        snapshot(&self.stderr_tail)
    }

    /// Opens a connection with the worker's token.
    pub async fn connect(&self) -> Result<Connection, TransportError> {
        connect(&self.endpoint, self.token.as_ref()).await
    }

    /// [`Self::connect`] with explicit bounds and keepalive.
    pub async fn connect_with(
        &self,
        options: &ClientOptions,
    ) -> Result<Connection, TransportError> {
        connect_with(&self.endpoint, self.token.as_ref(), options).await
    }
}

/// Spawns a worker for `spec` and waits up to `register_timeout` for its record.
pub async fn spawn_worker(
    command: &WorkerCommand,
    spec: &ProvisionSpec,
    register_timeout: Duration,
) -> Result<WorkerHandle, FleetError> {
    let mut spec = spec.clone();
    if spec.secrets.worker_auth_token.is_none() {
        spec.secrets.worker_auth_token =
            Some(Secret::random_token().map_err(|e| FleetError::Token(e.to_string()))?);
    }
    let payload = serde_json::to_vec(&spec).map_err(|e| FleetError::Spec(e.to_string()))?;
    let mut child = start(command)?;
    let pid = child.id().unwrap_or_default();
    let tail = SharedTail::default();
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(collect_stderr(stderr, pid, tail.clone()));
    }
    if let Some(mut stdin) = child.stdin.take() {
        // Dropping stdin closes the pipe: the worker reads to EOF.
        if let Err(source) = stdin.write_all(&payload).await {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(FleetError::Provision {
                pid,
                source,
                tail: snapshot(&tail),
            });
        }
    }
    let fabric = Fabric::new(&spec.fabric_dir);
    let ready = child.stdout.take();
    let record = match wait_for_record(
        &fabric,
        &spec.identity.child_id,
        pid,
        &mut child,
        ready,
        register_timeout,
    )
    .await
    {
        Ok(r) => r,
        Err(wait) => {
            let _ = child.start_kill();
            let status = child.wait().await.ok();
            let tail = snapshot(&tail);
            return Err(match (wait, status) {
                (WaitError::Exited(status), _) => FleetError::ExitedEarly { pid, status, tail },
                (WaitError::Timeout, _) => FleetError::RegisterTimeout {
                    pid,
                    dir: fabric.dir().to_path_buf(),
                    waited: register_timeout,
                    tail,
                },
            });
        }
    };
    Ok(WorkerHandle {
        endpoint: record.endpoint.clone(),
        token: spec.secrets.worker_auth_token.clone(),
        child: Some(child),
        pid: Some(pid),
        record: Some(record),
        stderr_tail: tail,
        fabric: Some(fabric),
    })
}

/// Environment variable with the pid of the process that started a worker
/// (not a secret; removed from cli programs' environment with every
/// `BAMBOO_` variable).
pub const PARENT_PID_VAR: &str = "BAMBOO_PARENT_PID";

/// Environment variable our fleet sets to `1` to ask a worker for the
/// `ready <endpoint>` line on its stdout (a wake-up; the fabric record is
/// what the fleet trusts). An environment variable, not a flag or a spec
/// field: a foreign protocol-v1 worker ignores it, and it is the same for
/// every child. Without it a worker prints nothing on stdout, which a
/// foreign parent may have handed down as its own.
pub const READY_LINE_VAR: &str = "BAMBOO_READY_LINE";

/// Whether this worker's parent asked for the ready line
/// ([`READY_LINE_VAR`] is `1`).
pub fn ready_line_wanted() -> bool {
    std::env::var_os(READY_LINE_VAR).is_some_and(|v| v == "1")
}

fn start(command: &WorkerCommand) -> Result<Child, FleetError> {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own process group: a Ctrl-C at the parent's terminal goes to the
    // parent, which cancels the runs and retires its workers; the workers
    // never see it (they still end with their parent: F12).
    #[cfg(unix)]
    cmd.process_group(0);
    // Who the parent is, said before the worker runs a single instruction:
    // a parent that dies while the worker is still starting is then noticed
    // (getppid alone would already show the re-parenting and look fine).
    cmd.env(PARENT_PID_VAR, std::process::id().to_string());
    cmd.env(READY_LINE_VAR, "1");
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(crate::secret::is_secret_env_name) {
            cmd.env_remove(&name);
        }
    }
    cmd.spawn().map_err(|source| FleetError::Start {
        program: command.program.clone(),
        source,
    })
}

enum WaitError {
    Exited(ExitStatus),
    Timeout,
}

async fn wait_for_record(
    fabric: &Fabric,
    child_id: &str,
    pid: u32,
    child: &mut Child,
    ready: Option<ChildStdout>,
    timeout: Duration,
) -> Result<AgentRecord, WaitError> {
    let deadline = Instant::now() + timeout;
    let mut ready = ready.map(BufReader::new);
    let mut line = String::new();
    loop {
        // A record left by an earlier process with the same id is not ours.
        if let Some(r) = fabric.resolve(child_id).filter(|r| r.pid == pid) {
            if let Some(out) = ready.take() {
                tokio::spawn(drain(out));
            }
            return Ok(r);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(WaitError::Exited(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout);
        }
        let nap = (deadline - now).min(Duration::from_millis(1));
        match ready.as_mut() {
            Some(out) => {
                tokio::select! {
                    n = out.read_line(&mut line) => {
                        // EOF or a read error: stop listening, keep polling.
                        if !matches!(n, Ok(n) if n > 0) { ready = None; }
                    }
                    _ = tokio::time::sleep(nap) => {}
                }
            }
            None => tokio::time::sleep(nap).await,
        }
    }
}

/// Keeps reading a worker's stdout so it never blocks on a full pipe.
async fn drain(mut out: BufReader<ChildStdout>) {
    let mut buf = [0u8; 4096];
    while matches!(out.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn collect_stderr(stderr: tokio::process::ChildStderr, pid: u32, tail: SharedTail) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "bamboo_worker_stderr", pid, "{line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}
