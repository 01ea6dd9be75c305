//! The tools the model may call, each with a JSON schema, confined to the
//! workspace: `read_file`, `list_dir`, `write_file`, `run_command`, and with
//! nested spawn `spawn_subagent`. File and command tools exist only when the
//! spec names a workspace. With enforced permissions, `write_file` and
//! `run_command` ask the host first; a denial is the tool's result, not a crash.
//! A read-only (guardian) child is not offered `write_file`, and a call of it
//! anyway is refused with a tool error saying why.

use std::process::Stdio;
use std::time::Duration;

use bamboo_subagent::executor::{ApprovalBody, RunContext};
use bamboo_subagent::spec::ProvisionSpec;
use serde_json::{json, Value};
use tokio::process::Command;

use super::workspace::Workspace;
use crate::env::child_env;
use crate::host::{ask_approval, Approval};
use crate::proc::{read_tail, ProcessGroup};

/// Most bytes `read_file` returns; longer files are cut with a note.
pub const MAX_READ_BYTES: usize = 256 * 1024;
/// Most entries `list_dir` returns.
pub const MAX_DIR_ENTRIES: usize = 1000;
/// Most bytes of each of stdout and stderr `run_command` returns (the tail).
pub const MAX_COMMAND_OUTPUT: usize = 32 * 1024;
/// Default and largest `run_command` timeouts.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_COMMAND_TIMEOUT_SECS: u64 = 600;

/// The tools this executor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolName {
    /// Read a text file.
    ReadFile,
    /// List a directory.
    ListDir,
    /// Write a text file.
    WriteFile,
    /// Run a shell command.
    RunCommand,
    /// Ask the parent to run a sub-agent.
    SpawnSubagent,
}

impl ToolName {
    /// Every tool, in the order offered to the model.
    pub const ALL: [ToolName; 5] = [
        Self::ReadFile,
        Self::ListDir,
        Self::WriteFile,
        Self::RunCommand,
        Self::SpawnSubagent,
    ];

    /// The name the model uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadFile => "read_file",
            Self::ListDir => "list_dir",
            Self::WriteFile => "write_file",
            Self::RunCommand => "run_command",
            Self::SpawnSubagent => "spawn_subagent",
        }
    }

    /// The tool called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    fn needs_workspace(self) -> bool {
        !matches!(self, Self::SpawnSubagent)
    }

    /// The OpenAI `tools` entry.
    pub fn definition(self) -> Value {
        let (description, parameters) = match self {
            Self::ReadFile => (
                "Read a UTF-8 text file in the workspace.",
                json!({"type":"object","properties":{"path":{"type":"string","description":"Path relative to the workspace root."}},"required":["path"],"additionalProperties":false}),
            ),
            Self::ListDir => (
                "List the entries of a directory in the workspace (directories end with /).",
                json!({"type":"object","properties":{"path":{"type":"string","description":"Directory relative to the workspace root; default \".\"."}},"additionalProperties":false}),
            ),
            Self::WriteFile => (
                "Write (create or replace) a text file in the workspace; parent directories are created.",
                json!({"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"],"additionalProperties":false}),
            ),
            Self::RunCommand => (
                "Run a shell command (sh -c) in the workspace root and return its exit status, stdout and stderr.",
                json!({"type":"object","properties":{"command":{"type":"string"},"timeout_secs":{"type":"integer","minimum":1,"maximum":MAX_COMMAND_TIMEOUT_SECS}},"required":["command"],"additionalProperties":false}),
            ),
            Self::SpawnSubagent => (
                "Ask the parent to run a sub-agent on an assignment and return its result.",
                json!({"type":"object","properties":{"assignment":{"type":"string"},"role":{"type":"string"}},"required":["assignment"],"additionalProperties":false}),
            ),
        };
        json!({"type":"function","function":{"name":self.as_str(),"description":description,"parameters":parameters}})
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The tool's result text.
    Ok(String),
    /// Why it failed (also what the model sees).
    Failed(String),
    /// The run was cancelled during the call.
    Cancelled,
}

/// Which tools a spec allows, and whether gated tools ask first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    /// Tool names hidden from the model (`spec.disabled_tools`).
    pub disabled: Vec<String>,
    /// Offer `spawn_subagent` (`capabilities.nested_spawn`).
    pub nested_spawn: bool,
    /// Ask the host before `write_file` and `run_command`.
    pub ask_first: bool,
    /// A read-only reviewer (`capabilities.guardian_read_only`): no
    /// `write_file`, `run_command` only from the read-only allow-list.
    pub read_only: bool,
}

impl ToolPolicy {
    /// The policy a spec asks for.
    pub fn from_spec(spec: &ProvisionSpec) -> Self {
        Self {
            disabled: spec.disabled_tools.clone().unwrap_or_default(),
            nested_spawn: spec.capabilities.nested_spawn,
            ask_first: spec.capabilities.enforce_permissions && !spec.capabilities.bypass,
            read_only: spec.capabilities.guardian_read_only,
        }
    }
}

/// The set of tools one run offers.
#[derive(Debug, Clone)]
pub struct Toolbox {
    workspace: Option<Workspace>,
    enabled: Vec<ToolName>,
    ask_first: bool,
    read_only: bool,
}

impl Toolbox {
    /// The tools `policy` allows, over `workspace` (already opened).
    pub fn new(policy: &ToolPolicy, workspace: Option<Workspace>) -> Self {
        let enabled = ToolName::ALL
            .into_iter()
            .filter(|t| !policy.disabled.iter().any(|d| d == t.as_str()))
            .filter(|t| !t.needs_workspace() || workspace.is_some())
            .filter(|t| *t != ToolName::SpawnSubagent || policy.nested_spawn)
            .filter(|t| *t != ToolName::WriteFile || !policy.read_only)
            .collect();
        Self {
            workspace,
            enabled,
            ask_first: policy.ask_first,
            read_only: policy.read_only,
        }
    }

    /// The `tools` array for the request (empty when no tool is offered).
    pub fn definitions(&self) -> Vec<Value> {
        self.enabled.iter().map(|t| t.definition()).collect()
    }

    /// Runs one call. Unknown or hidden tools and bad arguments fail with a
    /// message the model can act on.
    pub async fn call(&self, name: &str, args: &Value, ctx: &RunContext) -> ToolOutcome {
        if self.read_only && ToolName::parse(name) == Some(ToolName::WriteFile) {
            return ToolOutcome::Failed(
                "denied: this child is a read-only reviewer and may not write files; report what should change instead".into(),
            );
        }
        let Some(tool) = ToolName::parse(name).filter(|t| self.enabled.contains(t)) else {
            let offered: Vec<&str> = self.enabled.iter().map(|t| t.as_str()).collect();
            return ToolOutcome::Failed(format!(
                "unknown tool {name:?}: available tools are {}",
                offered.join(", ")
            ));
        };
        let ws = self.workspace.as_ref();
        match (tool, ws) {
            (ToolName::ReadFile, Some(ws)) => read_file(ws, args).await,
            (ToolName::ListDir, Some(ws)) => list_dir(ws, args).await,
            (ToolName::WriteFile, Some(ws)) => self.write_file(ws, args, ctx).await,
            (ToolName::RunCommand, Some(ws)) => self.run_command(ws, args, ctx).await,
            (ToolName::SpawnSubagent, _) => spawn_subagent(args, ctx).await,
            (_, None) => ToolOutcome::Failed("no workspace is configured".into()),
        }
    }

    async fn approve(&self, ctx: &RunContext, body: ApprovalBody) -> Option<ToolOutcome> {
        if !self.ask_first {
            return None;
        }
        match ask_approval(ctx, body).await {
            Approval::Granted => None,
            Approval::Cancelled => Some(ToolOutcome::Cancelled),
            Approval::Denied(why) if why == "denied by approver" => Some(ToolOutcome::Failed(why)),
            Approval::Denied(why) => {
                Some(ToolOutcome::Failed(format!("denied by approver: {why}")))
            }
        }
    }

    async fn write_file(&self, ws: &Workspace, args: &Value, ctx: &RunContext) -> ToolOutcome {
        let (Some(path), Some(content)) = (str_arg(args, "path"), str_arg(args, "content")) else {
            return ToolOutcome::Failed(
                "write_file needs string arguments \"path\" and \"content\"".into(),
            );
        };
        let target = match ws.for_write(path) {
            Ok(t) => t,
            Err(e) => return ToolOutcome::Failed(e.to_string()),
        };
        let body = ApprovalBody {
            tool_name: "write_file".into(),
            permission_type: "write".into(),
            resource: path.into(),
            question: format!("May the agent write {} bytes to {path}?", content.len()),
        };
        if let Some(denied) = self.approve(ctx, body).await {
            return denied;
        }
        if let Some(parent) = target.parent() {
            if let Err(e) = tokio::fs::create_dir_all(parent).await {
                return ToolOutcome::Failed(format!(
                    "could not create the directories for {path}: {e}"
                ));
            }
        }
        match tokio::fs::write(&target, content).await {
            Ok(()) => ToolOutcome::Ok(format!("wrote {} bytes to {path}", content.len())),
            Err(e) => ToolOutcome::Failed(format!("could not write {path}: {e}")),
        }
    }

    async fn run_command(&self, ws: &Workspace, args: &Value, ctx: &RunContext) -> ToolOutcome {
        let Some(command) = str_arg(args, "command") else {
            return ToolOutcome::Failed("run_command needs a string argument \"command\"".into());
        };
        let timeout = args
            .get("timeout_secs")
            .and_then(Value::as_u64)
            .map(|s| Duration::from_secs(s.clamp(1, MAX_COMMAND_TIMEOUT_SECS)))
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        if self.read_only && !super::guardian::read_only_command(command) {
            return ToolOutcome::Failed(format!(
                "denied: this reviewer is read-only and `{command}` is not on its read-only allow-list (listing, reading, diffs, tests); use such a command instead"
            ));
        }
        let body = ApprovalBody {
            tool_name: "run_command".into(),
            permission_type: "execute".into(),
            resource: command.into(),
            question: format!("May the agent run `{command}` in its workspace?"),
        };
        if let Some(denied) = self.approve(ctx, body).await {
            return denied;
        }
        run_shell(ws, command, timeout, ctx).await
    }
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

async fn read_file(ws: &Workspace, args: &Value) -> ToolOutcome {
    let Some(path) = str_arg(args, "path") else {
        return ToolOutcome::Failed("read_file needs a string argument \"path\"".into());
    };
    let target = match ws.existing(path) {
        Ok(t) => t,
        Err(e) => return ToolOutcome::Failed(e.to_string()),
    };
    let file = match tokio::fs::File::open(&target).await {
        Ok(f) => f,
        Err(e) => return ToolOutcome::Failed(format!("could not read {path}: {e}")),
    };
    let mut data = Vec::new();
    use tokio::io::AsyncReadExt;
    if let Err(e) = file
        .take(MAX_READ_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .await
    {
        return ToolOutcome::Failed(format!("could not read {path}: {e}"));
    }
    let truncated = data.len() > MAX_READ_BYTES;
    data.truncate(MAX_READ_BYTES);
    let mut text = String::from_utf8_lossy(&data).into_owned();
    if truncated {
        text.push_str(&format!(
            "\n[... truncated: {path} is longer than {MAX_READ_BYTES} bytes ...]"
        ));
    }
    ToolOutcome::Ok(text)
}

async fn list_dir(ws: &Workspace, args: &Value) -> ToolOutcome {
    let path = str_arg(args, "path").unwrap_or(".");
    let target = match ws.existing(path) {
        Ok(t) => t,
        Err(e) => return ToolOutcome::Failed(e.to_string()),
    };
    let mut rd = match tokio::fs::read_dir(&target).await {
        Ok(rd) => rd,
        Err(e) => return ToolOutcome::Failed(format!("could not list {path}: {e}")),
    };
    let mut names = Vec::new();
    let mut more = false;
    while let Ok(Some(entry)) = rd.next_entry().await {
        if names.len() >= MAX_DIR_ENTRIES {
            more = true;
            break;
        }
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut out = names.join("\n");
    if more {
        out.push_str(&format!(
            "\n[... more than {MAX_DIR_ENTRIES} entries, list truncated ...]"
        ));
    }
    ToolOutcome::Ok(out)
}

/// `sh -c command` in the workspace, in its own process group, with the
/// worker's environment minus secrets (no provider key: the model's commands
/// never see it).
async fn run_shell(
    ws: &Workspace,
    command: &str,
    timeout: Duration,
    ctx: &RunContext,
) -> ToolOutcome {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(ws.root())
        .env_clear()
        .envs(child_env(std::env::vars_os(), None))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ToolOutcome::Failed(format!("could not start sh: {e}")),
    };
    let group = ProcessGroup::of(&child);
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_tail(s, MAX_COMMAND_OUTPUT)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_tail(s, MAX_COMMAND_OUTPUT)));
    let status = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => {
            group.terminate(&mut child).await;
            return ToolOutcome::Cancelled;
        }
        _ = tokio::time::sleep(timeout) => {
            group.terminate(&mut child).await;
            return ToolOutcome::Failed(format!("command timed out after {} s and was killed", timeout.as_secs()));
        }
        s = child.wait() => s,
    };
    group.finish();
    let stdout = join_text(out).await;
    let stderr = join_text(err).await;
    match status {
        Ok(s) => ToolOutcome::Ok(format!("{s}\nstdout:\n{stdout}\nstderr:\n{stderr}")),
        Err(e) => ToolOutcome::Failed(format!("could not wait for the command: {e}")),
    }
}

async fn join_text(task: Option<tokio::task::JoinHandle<String>>) -> String {
    match task {
        Some(t) => tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    }
}

async fn spawn_subagent(args: &Value, ctx: &RunContext) -> ToolOutcome {
    let Some(assignment) = str_arg(args, "assignment") else {
        return ToolOutcome::Failed("spawn_subagent needs a string argument \"assignment\"".into());
    };
    let Some(host) = ctx.events.host().cloned() else {
        return ToolOutcome::Failed("no parent connection to spawn a sub-agent through".into());
    };
    let mut body = json!({ "assignment": assignment });
    if let Some(role) = str_arg(args, "role") {
        body["role"] = json!(role);
    }
    let reply = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => return ToolOutcome::Cancelled,
        r = host.spawn_subagent(body) => r,
    };
    match reply {
        Ok(v) => {
            let ok = v.get("success").and_then(Value::as_bool).unwrap_or(false);
            let result = match v.get("result") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            if ok {
                ToolOutcome::Ok(result)
            } else {
                ToolOutcome::Failed(format!("sub-agent failed: {result}"))
            }
        }
        Err(e) => ToolOutcome::Failed(format!("could not spawn a sub-agent: {e}")),
    }
}
