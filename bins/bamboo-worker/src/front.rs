//! `bamboo-worker run`: the command-line front door. Spawns one worker per
//! assignment (this very binary, through the fleet API), streams each child's
//! events to stdout as they arrive, and reports each final result.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bamboo_domain::{AgentEvent, TerminalStatus};
use bamboo_subagent::fleet::{spawn_worker, WorkerCommand};
use bamboo_subagent::frames::{ChildFrame, ParentFrame, RunRequest, Terminal};
use bamboo_subagent::spec::{ExecutorSpec, Identity, ProvisionSpec};

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// One child per assignment.
    pub assignments: Vec<String>,
    /// Worker program; this binary when absent.
    pub worker_bin: Option<PathBuf>,
    /// Fixed arguments for the worker program.
    pub worker_args: Vec<String>,
    /// How long a worker may take to register.
    pub register_timeout: Duration,
}

/// Runs every assignment concurrently; returns how many completed.
pub async fn run(options: RunOptions) -> anyhow::Result<usize> {
    let program = match &options.worker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find this program's own path to spawn workers")?,
    };
    let command = WorkerCommand {
        program,
        args: options.worker_args.clone(),
    };
    let fabric = tempfile::Builder::new()
        .prefix("bamboo-run-")
        .tempdir()
        .context("cannot create a temporary fabric directory (check TMPDIR)")?;
    let fabric_dir = fabric.path().join("agents").to_string_lossy().into_owned();
    let tasks: Vec<_> = options
        .assignments
        .iter()
        .enumerate()
        .map(|(i, assignment)| {
            let spec = child_spec(i + 1, &fabric_dir);
            let command = command.clone();
            let assignment = assignment.clone();
            let timeout = options.register_timeout;
            tokio::spawn(async move { run_one(i + 1, &command, &spec, assignment, timeout).await })
        })
        .collect();
    let mut completed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(true)) => completed += 1,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => eprintln!("bamboo-worker run: {e:#}"),
            Err(e) => eprintln!("bamboo-worker run: a child task failed: {e}"),
        }
    }
    Ok(completed)
}

fn child_spec(n: usize, fabric_dir: &str) -> ProvisionSpec {
    ProvisionSpec {
        version: bamboo_subagent::spec::PROTOCOL_VERSION,
        identity: Identity {
            child_id: format!("run-{}-{n}", std::process::id()),
            parent_id: None,
            project_key: None,
            role: "cli".into(),
            depth: 1,
        },
        executor: ExecutorSpec::Echo,
        fabric_dir: fabric_dir.to_owned(),
        storage_dir: None,
        workspace: None,
        model: None,
        disabled_tools: None,
        limits: Default::default(),
        secrets: Default::default(),
        reusable: false,
        placement: Default::default(),
        capabilities: Default::default(),
    }
}

async fn run_one(
    n: usize,
    command: &WorkerCommand,
    spec: &ProvisionSpec,
    assignment: String,
    register_timeout: Duration,
) -> anyhow::Result<bool> {
    let mut worker = spawn_worker(command, spec, register_timeout)
        .await
        .with_context(|| format!("child {n}: cannot start a worker"))?;
    let mut conn = worker
        .connect()
        .await
        .with_context(|| format!("child {n}: cannot connect to its worker"))?;
    conn.sender
        .send(ParentFrame::Run(RunRequest::new(assignment)))
        .await
        .with_context(|| format!("child {n}: cannot send the run"))?;
    while let Some(frame) = conn.receiver.recv().await {
        match frame.with_context(|| format!("child {n}: connection failed"))? {
            ChildFrame::Event { event } => print_event(n, &event),
            ChildFrame::ApprovalRequest { id, body } => {
                say(
                    n,
                    &format!(
                        "approval asked for {} on {:?}: denied (no approver)",
                        body.tool_name, body.resource
                    ),
                );
                let _ = conn
                    .sender
                    .send(ParentFrame::ApprovalReply {
                        id,
                        approved: false,
                    })
                    .await;
            }
            ChildFrame::SubagentRequest { id, .. } => {
                let body = serde_json::json!({"success": false, "result": "nested spawn is not available from `run`"});
                let _ = conn
                    .sender
                    .send(ParentFrame::SubagentReply { id, body })
                    .await;
            }
            ChildFrame::Terminal(t) => {
                worker.kill().await;
                return Ok(report(n, &t));
            }
        }
    }
    worker.kill().await;
    say(
        n,
        "error: the worker closed the connection before its run ended",
    );
    Ok(false)
}

fn print_event(n: usize, event: &AgentEvent) {
    match event {
        AgentEvent::Token { content } => say(n, &format!("token {content:?}")),
        other => say(n, &serde_json::to_string(other).unwrap_or_default()),
    }
}

fn report(n: usize, t: &Terminal) -> bool {
    match t.status {
        TerminalStatus::Completed => say(
            n,
            &format!("completed: {}", t.result.as_deref().unwrap_or("")),
        ),
        status => say(
            n,
            &format!(
                "{status}: {}",
                t.error.as_deref().unwrap_or("no reason given")
            ),
        ),
    }
    t.status == TerminalStatus::Completed
}

fn say(n: usize, line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{n}] {line}");
}
