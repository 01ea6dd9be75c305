//! Engine configuration: everything the builder collects.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use bamboo_subagent::spec::{ExecutorSpec, DEFAULT_MAX_SPAWN_DEPTH};
use bamboo_subagent::Secret;

use crate::approval::ApprovalConfig;
use crate::credentials::CredentialResolver;
use crate::launch::Routing;
use crate::timeouts::Timeouts;
use crate::warm::WarmLimits;

/// The resolved configuration of one engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub data_dir: PathBuf,
    pub max_running: usize,
    /// Limits of the warm pool of parked local workers.
    pub warm: WarmLimits,
    pub approvals: ApprovalConfig,
    pub timeouts: Timeouts,
    pub executor: ExecutorSpec,
    pub credentials: Option<Arc<dyn CredentialResolver>>,
    pub max_spawn_depth: u32,
    pub event_log: crate::events::LogLimits,
    pub role_prompts: HashMap<String, String>,
    pub enforce_permissions: bool,
    pub routing: Routing,
    /// Variables passed on purpose to `cli_adapter` programs (`--pass-env`).
    pub pass_env: BTreeMap<String, Secret>,
}

impl EngineConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            max_running: 8,
            warm: WarmLimits::default(),
            approvals: ApprovalConfig::default(),
            timeouts: Timeouts::default(),
            executor: ExecutorSpec::BambooRuntime,
            credentials: None,
            max_spawn_depth: DEFAULT_MAX_SPAWN_DEPTH,
            event_log: crate::events::LogLimits::default(),
            role_prompts: HashMap::new(),
            enforce_permissions: true,
            routing: Routing::default(),
            pass_env: BTreeMap::new(),
        }
    }

    /// The system prompt for a role: configured, else a generic one.
    pub fn system_prompt(&self, role: &str, responsibility: &str) -> String {
        if let Some(p) = self.role_prompts.get(role) {
            return p.clone();
        }
        let role = if role.is_empty() { "general" } else { role };
        let mut p = format!("You are a {role} sub-agent working for a parent agent.");
        if !responsibility.is_empty() {
            p.push_str(&format!(" Your responsibility: {responsibility}."));
        }
        p.push_str(" Do the assignment and answer with the result.");
        p
    }
}
