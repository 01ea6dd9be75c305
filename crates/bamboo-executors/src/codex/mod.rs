//! The `codex` executor: the Codex CLI as the child's engine, in its
//! `exec --json` mode (see [`events`]).
//!
//! - The agent starts in the workspace as `codex exec --json
//!   --skip-git-repo-check` with the spec's `--sandbox`, `-m` model and
//!   `approval_policy`; the assignment goes to its stdin (`-`), which is
//!   then closed. A run with the agent's thread id from an earlier run of
//!   the same child starts `codex exec resume <id>` instead.
//! - The provider comes from the spec's credential as a custom provider
//!   given with `-c` (base URL and wire API in argv, never the key); the
//!   key reaches the agent only in its own environment, under
//!   [`KEY_VAR`].
//! - Messages, command items, file changes, errors and usage become
//!   events; the last message is the result.
//! - Unless the spec sets `inherit_user_config`, the agent gets a private
//!   `CODEX_HOME`, so the user's own `~/.codex` does not leak into a child.
//! - Cancel ends its process group (and cgroup leaf) within the grace.
//!
//! - `mode: app_server` runs `codex app-server` instead and speaks its
//!   JSON-RPC (see [`app_server`]): every approval Codex asks for is relayed
//!   through the run's host bridge, steering becomes `turn/steer`, cancel
//!   `turn/interrupt`.

pub mod app_server;
pub mod events;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::AgentEvent;
use bamboo_subagent::executor::{Executor, RunContext, RunOutcome, RunRequest};
use bamboo_subagent::spec::{CodexMode, ExecutorSpec, ProvisionSpec};
use bamboo_subagent::Secret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::time::Instant;

use super::env::{child_env, pass_through};
use super::proc::tree::RunMark;
use super::proc::{read_tail, spawn_agent, RunProcesses, KILL_GRACE};
use events::Reader;

/// The variable the agent's provider key is put under (named in the
/// provider's `env_key`).
pub const KEY_VAR: &str = "BAMBOO_CODEX_API_KEY";
/// The custom provider's name in Codex's config.
const PROVIDER: &str = "bamboo";
/// How much of stderr's tail an error carries.
const STDERR_TAIL_BYTES: usize = 4096;

/// Why a `codex` spec cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodexConfigError {
    /// The spec is not a `codex` spec.
    #[error("executor kind {0:?} is not codex")]
    WrongKind(&'static str),
    /// `binary` is blank.
    #[error("codex.binary is empty: give the path of the codex program, or leave it out to use `codex` from PATH")]
    EmptyBinary,
    /// A read-only reviewer was asked for.
    #[error("capabilities.guardian_read_only is enforced for a codex child only with sandbox \"read-only\": set it, or use bamboo_runtime")]
    ReadOnly,
    /// A value that would reach Codex's TOML config is not plain text.
    #[error("codex.{0} may not contain quotes, backslashes or line breaks: give a plain value")]
    BadValue(&'static str),
}

/// Runs `codex exec` per assignment. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct CodexExecutor {
    mode: CodexMode,
    binary: String,
    model: Option<String>,
    sandbox: Option<String>,
    approval_policy: Option<String>,
    network_access: Option<bool>,
    wire_api: String,
    base_url: Option<String>,
    key: Option<Secret>,
    inherit_user_config: bool,
    forward_env: Vec<String>,
    passed: std::collections::BTreeMap<String, Secret>,
    workspace: Option<PathBuf>,
    run_timeout: Option<Duration>,
    home: PathBuf,
}

fn plain(value: &Option<String>, field: &'static str) -> Result<(), CodexConfigError> {
    if value
        .as_deref()
        .is_some_and(|v| v.contains(['"', '\\', '\n', '\r']))
    {
        return Err(CodexConfigError::BadValue(field));
    }
    Ok(())
}

impl CodexExecutor {
    /// Builds the executor from a `codex` spec.
    pub fn from_spec(spec: &ProvisionSpec) -> Result<Self, CodexConfigError> {
        let ExecutorSpec::Codex(c) = &spec.executor else {
            return Err(CodexConfigError::WrongKind(spec.executor.kind().wire()));
        };
        if c.binary.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err(CodexConfigError::EmptyBinary);
        }
        if spec.capabilities.guardian_read_only && c.sandbox.as_deref() != Some("read-only") {
            return Err(CodexConfigError::ReadOnly);
        }
        let provider = c
            .provider_key_ref
            .clone()
            .or_else(|| spec.model.as_ref().map(|m| m.provider.clone()));
        let cred = provider
            .as_deref()
            .and_then(|p| spec.secrets.credential_for(p));
        let base_url = c
            .base_url
            .clone()
            .or_else(|| cred.and_then(|c| c.base_url.clone()));
        for (v, f) in [
            (&c.model, "model"),
            (&c.sandbox, "sandbox"),
            (&base_url, "base_url"),
            (&c.wire_api, "wire_api"),
            (&c.approval_policy, "approval_policy"),
        ] {
            plain(v, f)?;
        }
        let home = match &spec.storage_dir {
            Some(dir) => PathBuf::from(dir).join("codex-home"),
            None => std::env::temp_dir().join("bamboo-codex-home"),
        };
        Ok(Self {
            mode: c.mode.unwrap_or_default(),
            binary: c.binary.clone().unwrap_or_else(|| "codex".into()),
            model: c.model.clone().or_else(|| {
                spec.model
                    .as_ref()
                    .map(|m| m.model.clone())
                    .filter(|m| m != "default")
            }),
            sandbox: c.sandbox.clone(),
            approval_policy: c.approval_policy.clone(),
            network_access: c.network_access,
            wire_api: c.wire_api.clone().unwrap_or_else(|| "responses".into()),
            base_url,
            key: cred.map(|c| c.api_key.clone()),
            inherit_user_config: c.inherit_user_config.unwrap_or(false),
            forward_env: c.forward_env.clone().unwrap_or_default(),
            passed: spec.secrets.pass_env.clone(),
            workspace: spec.workspace.as_ref().map(PathBuf::from),
            run_timeout: spec.limits.run_timeout_secs.map(Duration::from_secs),
            home,
        })
    }

    /// The agent's arguments for a run resuming thread `session` (if any).
    pub fn args(&self, session: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec!["exec".into()];
        if let Some(id) = session {
            args.extend(["resume".into(), id.to_owned()]);
        }
        args.extend(["--json".into(), "--skip-git-repo-check".into()]);
        args.extend(self.config_args());
        args.push("-".into());
        args
    }

    /// The `-c` configuration both modes share: provider, model, sandbox,
    /// approval policy, network access.
    fn config_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.key.is_some() {
            let url = self
                .base_url
                .clone()
                .unwrap_or_else(|| "https://api.openai.com/v1".into());
            args.push("-c".into());
            args.push(format!(
                r#"model_providers.{PROVIDER}={{name="{PROVIDER}",base_url="{url}",wire_api="{}",env_key="{KEY_VAR}"}}"#,
                self.wire_api
            ));
            args.extend(["-c".into(), format!("model_provider={PROVIDER}")]);
        }
        if let Some(m) = &self.model {
            // As configuration, not `-m`: `app-server` takes no `-m`.
            args.extend(["-c".into(), format!("model=\"{m}\"")]);
        }
        if let Some(s) = &self.sandbox {
            // `exec resume` takes no --sandbox; the config key works for both.
            args.extend(["-c".into(), format!("sandbox_mode=\"{s}\"")]);
        }
        // The app server takes the policy per thread (`thread/start`).
        if let (Some(p), CodexMode::Exec) = (&self.approval_policy, self.mode) {
            args.extend(["-c".into(), format!("approval_policy=\"{p}\"")]);
        }
        if let Some(n) = self.network_access {
            args.extend([
                "-c".into(),
                format!("sandbox_workspace_write.network_access={n}"),
            ]);
        }
        args
    }

    fn env(&self) -> Result<Vec<(OsString, OsString)>, String> {
        let mut env = child_env(std::env::vars_os(), None);
        for name in &self.forward_env {
            if let Some(v) = std::env::var_os(name) {
                env.retain(|(n, _)| n.to_str() != Some(name.as_str()));
                env.push((name.into(), v));
            }
        }
        pass_through(&mut env, &self.passed);
        if let Some(key) = &self.key {
            // The one secret the agent gets: its own provider's key.
            env.push((KEY_VAR.into(), key.expose().into()));
        }
        if !self.inherit_user_config {
            std::fs::create_dir_all(&self.home).map_err(|e| {
                format!(
                    "cannot create codex's private home {}: {e}: check that the storage directory is writable",
                    self.home.display()
                )
            })?;
            env.retain(|(n, _)| n != "CODEX_HOME");
            env.push(("CODEX_HOME".into(), self.home.clone().into()));
        }
        Ok(env)
    }

    fn spawn(&self, args: Vec<String>, mark: &RunMark) -> Result<(Child, RunProcesses), String> {
        let env = self.env()?;
        spawn_agent(
            "codex",
            &self.binary,
            &args,
            &env,
            self.workspace.as_deref(),
            mark,
            "install Codex (npm install @openai/codex) or give its path with --agent-bin / codex.binary",
        )
    }

    async fn run_agent(&self, request: RunRequest, ctx: RunContext) -> RunOutcome {
        let session = request.agent_session_id.clone();
        let mark = RunMark::fresh();
        let (mut child, procs) = match self.spawn(self.args(session.as_deref()), &mark) {
            Ok(c) => c,
            Err(e) => return RunOutcome::error(e),
        };
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return RunOutcome::error("codex: the agent's stdin/stdout were not captured");
        };
        let stderr = child
            .stderr
            .take()
            .map(|e| tokio::spawn(read_tail(e, STDERR_TAIL_BYTES)));
        let prompt = request.assignment.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
        let deadline = self.run_timeout.map(|d| Instant::now() + d);
        let mut lines = BufReader::new(stdout).lines();
        let mut reader = Reader::default();
        let stop = loop {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => break Some(false),
                _ = until(deadline) => break Some(true),
                line = lines.next_line() => match line {
                    Ok(Some(l)) => {
                        for ev in reader.line(&l) {
                            if ctx.events.emit(ev).await.is_err() {
                                ctx.cancel.cancel();
                            }
                        }
                    }
                    Ok(None) | Err(_) => break None,
                },
            }
        };
        if let Some(timed_out) = stop {
            procs.terminate(&mut child).await;
            return if timed_out {
                RunOutcome::error(format!(
                    "codex run timed out after {} s: raise --run-timeout (limits.run_timeout_secs) or shorten the assignment",
                    self.run_timeout.map_or(0, |d| d.as_secs())
                ))
            } else {
                RunOutcome::cancelled()
            };
        }
        let status = child.wait().await;
        procs.finish().await;
        let tail = match stderr {
            Some(t) => tokio::time::timeout(KILL_GRACE, t)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        self.conclude(reader, status, &tail, &ctx).await
    }

    async fn conclude(
        &self,
        reader: Reader,
        status: std::io::Result<std::process::ExitStatus>,
        stderr_tail: &str,
        ctx: &RunContext,
    ) -> RunOutcome {
        if ctx.cancel.is_cancelled() {
            return RunOutcome::cancelled();
        }
        let ok = status.as_ref().is_ok_and(|s| s.success());
        let mut outcome = match (&reader.failure, ok) {
            (Some(f), _) => RunOutcome::error(format!("codex run failed: {f}")),
            (None, true) => RunOutcome::completed(reader.last_message.clone().unwrap_or_default()),
            (None, false) => {
                let how = match &status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                let mut msg = format!("codex program {:?} failed ({how})", self.binary);
                if !stderr_tail.trim().is_empty() {
                    msg.push_str("; stderr tail:\n");
                    msg.push_str(stderr_tail.trim_end());
                }
                RunOutcome::error(msg)
            }
        };
        let usage = reader.usage;
        if outcome.status == bamboo_domain::TerminalStatus::Completed
            && ctx
                .events
                .emit(AgentEvent::Complete { usage: Some(usage) })
                .await
                .is_err()
        {
            return RunOutcome::cancelled();
        }
        outcome.usage = Some(usage);
        outcome.agent_session_id = reader.thread_id;
        outcome
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Executor for CodexExecutor {
    async fn run(&self, request: RunRequest, ctx: RunContext) -> RunOutcome {
        match self.mode {
            CodexMode::Exec => self.run_agent(request, ctx).await,
            CodexMode::AppServer => app_server::run(self, request, ctx).await,
        }
    }
}

/// Builds the registry entry for a `codex` spec.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, CodexConfigError> {
    Ok(Arc::new(CodexExecutor::from_spec(spec)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(executor: serde_json::Value) -> ProvisionSpec {
        let v = serde_json::json!({"identity": {"child_id": "c"}, "executor": executor,
            "fabric_dir": "/f", "model": {"provider": "openai", "model": "m"},
            "secrets": {"provider_credentials": [{"provider": "openai", "api_key": "sk-SECRET", "base_url": "http://127.0.0.1:9/v1"}]}});
        ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("spec")
    }

    #[test]
    fn args_name_the_provider_sandbox_and_policy_but_never_the_key() {
        let e = CodexExecutor::from_spec(&spec(serde_json::json!({"kind": "codex",
            "sandbox": "workspace-write", "approval_policy": "never"})))
        .unwrap();
        let args = e.args(None).join(" ");
        assert!(
            args.starts_with("exec --json --skip-git-repo-check"),
            "{args}"
        );
        assert!(
            args.contains(r#"base_url="http://127.0.0.1:9/v1""#),
            "{args}"
        );
        assert!(args.contains(&format!(r#"env_key="{KEY_VAR}""#)), "{args}");
        assert!(
            args.contains(r#"model="m""#) && args.contains(r#"sandbox_mode="workspace-write""#),
            "{args}"
        );
        assert!(
            args.contains(r#"approval_policy="never""#) && args.ends_with(" -"),
            "{args}"
        );
        assert!(!args.contains("sk-SECRET") && !format!("{e:?}").contains("sk-SECRET"));
        assert!(e
            .args(Some("t-1"))
            .join(" ")
            .starts_with("exec resume t-1 --json"));
        let server = CodexExecutor::from_spec(&spec(
            serde_json::json!({"kind": "codex", "mode": "app_server", "approval_policy": "untrusted"}),
        ))
        .unwrap();
        assert_eq!(server.mode, CodexMode::AppServer);
        assert!(!server.config_args().join(" ").contains("approval_policy"));
        let quoted = CodexExecutor::from_spec(&spec(
            serde_json::json!({"kind": "codex", "base_url": "x\"y"}),
        ));
        assert_eq!(quoted.err(), Some(CodexConfigError::BadValue("base_url")));
    }
}
