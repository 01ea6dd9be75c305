//! The one engine an `mcp` process owns, and what every connection shares.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use bamboo_domain::ModelRef;
use bamboo_engine::credentials::CredentialResolver;
use bamboo_engine::Engine;
use bamboo_subagent::spec::ProviderCredential;

use super::args::{McpArgs, Settings};
use crate::approve::{FrontPolicy, NamedProgram};
use crate::{ApproveMode, Fallback};
use bamboo_executors::flags::self_spec;

/// What every connection of this process shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The engine all roots live in.
    pub engine: Engine,
    /// `--root`: the root every connection continues, when given.
    pub root: Option<String>,
    /// The model new roots give their children (`--model`), if any.
    pub model: Option<ModelRef>,
    /// The workspace new roots give their children (`--workspace`).
    pub workspace: String,
}

/// Starts the engine on `settings.data_dir` with the front door's executor
/// and approval flags.
pub async fn start(args: &McpArgs, settings: Settings) -> anyhow::Result<Arc<Shared>> {
    let program = match &args.worker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find this program's own path to spawn workers; pass --worker-bin")?,
    };
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}: pass another --data-dir",
            settings.data_dir.display()
        )
    })?;
    let mut builder = Engine::builder(&settings.data_dir)
        .worker_program(program)
        .worker_args(args.worker_args.clone())
        .max_running(args.max_running)
        .approval_policy(policy(args))
        .human_approvals(true)
        .approval_timeout(args.approval_timeout)
        .enforce_permissions(true);
    for (name, value) in &settings.pass_env {
        builder = builder.pass_env(name, value.clone());
    }
    // The executor, its model and the one credential, from the same
    // mapping a resident worker uses, so every executor kind is covered.
    let own = self_spec(&settings.executor, &settings.workspace, Vec::new(), "mcp");
    builder = builder.executor(own.executor);
    if let Some(credential) = own.secrets.provider_credentials.into_iter().next() {
        builder = builder.credentials(Arc::new(OneCredential(credential)));
    }
    let engine = builder.build().await.with_context(|| {
        format!(
            "cannot start the engine on --data-dir {} (another `bamboo-worker mcp` may be using it: give this one its own --data-dir, or share one server with --listen)",
            settings.data_dir.display()
        )
    })?;
    if let Some(root) = &args.root {
        check_root(&engine, root).await?;
    }
    Ok(Arc::new(Shared {
        engine,
        root: args.root.clone(),
        model: own.model,
        workspace: settings.workspace.to_string_lossy().into_owned(),
    }))
}

/// `--approve all|none` and `--approve-tool` answer at once; everything
/// else goes to the person at the client (elicitation or `approvals`).
fn policy(args: &McpArgs) -> Arc<FrontPolicy> {
    let all = match args.approve {
        Some(ApproveMode::All) => Some(true),
        Some(ApproveMode::None) => Some(false),
        Some(ApproveMode::Ask) | None => None,
    };
    // Denial notes are for a terminal; here the client sees the denial in
    // the child's result, so the notes only go to the log.
    let (notes, mut read) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(note) = read.recv().await {
            tracing::info!("{note}");
        }
    });
    Arc::new(FrontPolicy::new(
        NamedProgram::none(),
        all,
        args.approve_tools.iter().cloned().collect::<HashSet<_>>(),
        Fallback::Ask,
        notes,
    ))
}

/// `--root` must name an existing root session.
async fn check_root(engine: &Engine, root: &str) -> anyhow::Result<()> {
    let session = engine
        .session(root)
        .await
        .with_context(|| format!("cannot load --root {root}"))?;
    match session {
        None => anyhow::bail!("--root {root}: no such session in this --data-dir; `bamboo-worker sessions --data-dir DIR` lists the roots"),
        Some(s) if s.parent_id.is_some() => anyhow::bail!("--root {root} is a child session, not a root: give the id of its root"),
        Some(_) => Ok(()),
    }
}

/// Hands out the one credential the flags gave, for its provider only.
#[derive(Debug)]
struct OneCredential(ProviderCredential);

impl CredentialResolver for OneCredential {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        (provider == self.0.provider).then(|| self.0.clone())
    }
}
