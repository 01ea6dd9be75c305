//! `bamboo-worker run`: the command-line front door. Builds an engine, creates
//! one child per assignment under a root session, streams every child's events
//! to stdout as they arrive, and reports each final result.
//!
//! The workers are this very binary unless `--worker-bin` names another
//! protocol-v1 worker.

pub mod approve;
mod print;
pub mod resume;
pub mod sessions;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use bamboo_domain::{AgentEvent, ChildStatus, ModelRef};
use bamboo_engine::credentials::CredentialResolver;
use bamboo_engine::{CreateChild, Engine, Since};
use bamboo_subagent::spec::{ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;
use futures::StreamExt;

pub use approve::ApproveMode;

/// Which executor the children run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorChoice {
    /// Echo the assignment back.
    Echo,
    /// Run a command-line agent.
    Cli {
        /// The program.
        command: String,
        /// Its arguments (`{assignment}` is replaced).
        args: Vec<String>,
        /// The provider whose key the program gets in its environment
        /// (its usual variable, e.g. `ANTHROPIC_API_KEY`); none: no key.
        provider: Option<Provider>,
    },
    /// The agent loop over an OpenAI-compatible endpoint.
    Llm {
        /// The model and its key.
        provider: Provider,
    },
}

/// A model and the credential of its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// `provider/model`.
    pub model: ModelRef,
    /// API base URL, when not the provider's default.
    pub base_url: Option<String>,
    /// The API key, read from the environment of `run`.
    pub api_key: Secret,
}

impl ExecutorChoice {
    fn provider(&self) -> Option<&Provider> {
        match self {
            Self::Echo => None,
            Self::Cli { provider, .. } => provider.as_ref(),
            Self::Llm { provider } => Some(provider),
        }
    }
}

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// One child per assignment.
    pub assignments: Vec<String>,
    /// The children's executor.
    pub executor: ExecutorChoice,
    /// Working directory of the children.
    pub workspace: Option<PathBuf>,
    /// How gated actions are answered.
    pub approve: ApproveMode,
    /// Worker program; this binary when absent.
    pub worker_bin: Option<PathBuf>,
    /// Fixed arguments for the worker program.
    pub worker_args: Vec<String>,
    /// At most this many children run at once.
    pub max_running: usize,
    /// Where sessions are kept; a temporary directory when absent.
    pub data_dir: Option<PathBuf>,
    /// Variables passed on purpose to cli programs (`--pass-env`).
    pub pass_env: Vec<(String, Secret)>,
    /// Root session whose unfinished children are rerun (`--resume`).
    pub resume: Option<String>,
}

/// Runs every assignment (and, with `resume`, reruns the unfinished
/// children); returns how many completed, of how many.
pub async fn run(options: RunOptions) -> anyhow::Result<(usize, usize)> {
    let program = match &options.worker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find this program's own path to spawn workers")?,
    };
    let temp = tempfile::Builder::new()
        .prefix("bamboo-run-")
        .tempdir()
        .context("cannot create a temporary data directory (check TMPDIR)")?;
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let engine = build_engine(&options, program, data_dir).await?;
    let result = drive(&engine, &options).await;
    engine.shutdown().await;
    result
}

async fn build_engine(
    options: &RunOptions,
    program: PathBuf,
    data_dir: PathBuf,
) -> anyhow::Result<Engine> {
    let mut builder = Engine::builder(data_dir)
        .worker_program(program)
        .worker_args(options.worker_args.clone())
        .max_running(options.max_running)
        .approval_policy(approve::policy(options.approve))
        .enforce_permissions(true);
    for (name, value) in &options.pass_env {
        builder = builder.pass_env(name, value.clone());
    }
    builder = match &options.executor {
        ExecutorChoice::Echo => builder.executor(ExecutorSpec::Echo),
        ExecutorChoice::Cli { command, args, .. } => builder.executor(ExecutorSpec::CliAdapter {
            command: command.clone(),
            args: args.clone(),
        }),
        ExecutorChoice::Llm { .. } => builder.executor(ExecutorSpec::BambooRuntime),
    };
    if let Some(p) = options.executor.provider() {
        builder = builder.credentials(std::sync::Arc::new(OneCredential(ProviderCredential {
            provider: p.model.provider.clone(),
            api_key: p.api_key.clone(),
            base_url: p.base_url.clone(),
            provider_type: Some("openai".into()),
        })));
    }
    builder.build().await.context("cannot start the engine")
}

async fn drive(engine: &Engine, options: &RunOptions) -> anyhow::Result<(usize, usize)> {
    // Children inherit the root's model, which routes the credential (E20).
    let model = options.executor.provider().map(|p| p.model.clone());
    let root = match &options.resume {
        Some(id) => engine
            .session(id)
            .await?
            .with_context(|| format!("--resume {id}: no such session in the data directory"))?,
        None => engine.create_root("bamboo-worker run", model).await?,
    };
    if let Some(dir) = &options.data_dir {
        eprintln!(
            "bamboo-worker run: root session {} (resume with --data-dir {} --resume {})",
            root.id,
            dir.display(),
            root.id
        );
    }
    // A resumed root's log holds the earlier run's events: read only new ones.
    let since = match options.resume {
        Some(_) => Since::Now,
        None => Since::Start,
    };
    let mut events = engine.events(&root.id, since);
    let workspace = options
        .workspace
        .as_ref()
        .map(|w| w.to_string_lossy().into_owned());
    let mut numbers = HashMap::new();
    if options.resume.is_some() {
        for r in resume::rerun(engine, &root.id).await? {
            let n = numbers.len() + 1;
            print::say(n, &r.describe());
            numbers.insert(r.id, n);
        }
        if numbers.is_empty() {
            eprintln!(
                "bamboo-worker run: nothing to rerun: no child of {} is unfinished",
                root.id
            );
        }
    }
    for assignment in &options.assignments {
        let i = numbers.len();
        let mut input = CreateChild::new(&root.id, assignment);
        input.role = "cli".into();
        input.workspace = workspace.clone();
        input.auto_run = true;
        let child = engine
            .create_child(input)
            .await
            .with_context(|| format!("cannot create child {}", i + 1))?;
        numbers.insert(child.id, i + 1);
    }
    let mut completed = 0;
    let total = numbers.len();
    let mut remaining = total;
    while remaining > 0 {
        match events.next().await.map(|logged| logged.event) {
            Some(AgentEvent::SubAgentEvent {
                child_session_id,
                event,
                ..
            }) => print::event(numbers.get(&child_session_id).copied().unwrap_or(0), &event),
            Some(AgentEvent::ChildApprovalRequested {
                child_session_id,
                tool_name,
                resource,
                ..
            }) => {
                let n = numbers.get(&child_session_id).copied().unwrap_or(0);
                print::say(
                    n,
                    &format!("approval requested: {tool_name} on {resource:?}"),
                );
            }
            Some(AgentEvent::SubAgentCompleted {
                child_session_id, ..
            }) => {
                let Some(&n) = numbers.get(&child_session_id) else {
                    continue;
                };
                remaining -= 1;
                let detail = engine.get_child(&root.id, &child_session_id).await?;
                if detail.status == ChildStatus::Completed {
                    completed += 1;
                    print::say(
                        n,
                        &format!("completed: {}", detail.last_result.unwrap_or_default()),
                    );
                } else {
                    let why = detail
                        .last_error
                        .unwrap_or_else(|| "no reason given".into());
                    print::say(n, &format!("{}: {why}", detail.status));
                }
            }
            Some(_) => {}
            None => bail!("the engine's event stream closed before every child finished"),
        }
    }
    Ok((completed, total))
}

/// Hands out the one credential `run` was given, for its provider only.
#[derive(Debug)]
struct OneCredential(ProviderCredential);

impl CredentialResolver for OneCredential {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        (provider == self.0.provider).then(|| self.0.clone())
    }
}
