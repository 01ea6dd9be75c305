//! From a child session to what a worker receives: the ProvisionSpec (baked in
//! at spawn, so it decides the pool fingerprint) and the `run` request
//! (rehydration: the whole transcript ships with every run).
// Behaviours: E14.

use bamboo_domain::{Role, Session};
use bamboo_subagent::frames::RunRequest;
use bamboo_subagent::spec::{
    Capabilities, ExecutorSpec, Identity, Limits, ProvisionSpec, PROTOCOL_VERSION,
};

use crate::config::EngineConfig;
use crate::credentials::secrets_for;

/// Metadata key of a child's disabled tool list (array of strings).
/// Where the engine's workers register: `<data>/fabric`.
// Behaviours: F6.
pub(crate) fn fabric_dir(cfg: &EngineConfig) -> std::path::PathBuf {
    cfg.data_dir.join("fabric")
}

pub const DISABLED_TOOLS_KEY: &str = "disabled_tools";

/// The spec of a worker able to serve `child`. `worker_id` names the worker in
/// the fabric; it is not the child id because a pooled worker serves many.
pub(crate) fn spec_for(cfg: &EngineConfig, child: &Session, worker_id: &str) -> ProvisionSpec {
    let info = child.child.as_ref();
    let role = info.map(|c| c.role.clone()).unwrap_or_default();
    let depth = child.spawn_depth;
    let provider = child.model.as_ref().map(|m| m.provider.as_str());
    let resolver = cfg.credentials.as_deref();
    let mut secrets = secrets_for(resolver, provider, &child.id);
    // Only a cli_adapter program reads them: no other executor gets them.
    if matches!(cfg.executor, ExecutorSpec::CliAdapter { .. }) {
        secrets.pass_env = cfg.pass_env.clone();
    }
    ProvisionSpec {
        version: PROTOCOL_VERSION,
        identity: Identity {
            child_id: worker_id.to_owned(),
            parent_id: child.parent_id.clone(),
            project_key: child.project_key.clone(),
            role,
            depth,
        },
        executor: cfg.executor.clone(),
        fabric_dir: fabric_dir(cfg).display().to_string(),
        storage_dir: Some(cfg.data_dir.join("actors").display().to_string()),
        workspace: child.workspace.clone(),
        model: child.model.clone(),
        disabled_tools: disabled_tools(child),
        limits: Limits {
            run_timeout_secs: None,
            idle_timeout_secs: Some(cfg.timeouts.worker_idle.as_secs().max(1)),
            max_rounds: info.and_then(|c| c.max_rounds),
            max_cost_usd: info.and_then(|c| c.max_cost_usd).map(|limit| {
                let spent = crate::usage::totals(child).cost_usd.unwrap_or(0.0);
                // Never zero: an agent told it may spend nothing would not start.
                (limit - spent).max(0.000_001)
            }),
        },
        secrets,
        reusable: true,
        placement: cfg.routing.placement_of(child),
        capabilities: Capabilities {
            enforce_permissions: cfg.enforce_permissions,
            nested_spawn: depth < cfg.max_spawn_depth,
            no_human_approver: !cfg.approvals.human && cfg.approvals.policy.is_none(),
            max_spawn_depth: Some(cfg.max_spawn_depth),
            bypass: child.metadata.get(crate::escalation::BYPASS_KEY)
                == Some(&serde_json::Value::Bool(true)),
            guardian_read_only: info.is_some_and(|c| c.read_only),
            ..Capabilities::default()
        },
        bus: None,
    }
}

fn disabled_tools(child: &Session) -> Option<Vec<String>> {
    let list = child.metadata.get(DISABLED_TOOLS_KEY)?.as_array()?;
    let tools: Vec<String> = list
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    (!tools.is_empty()).then_some(tools)
}

/// The `run` frame for `child`: the last user message is the
/// assignment, and `messages` is the whole transcript, oldest first, including
/// that message (what the reference parent sends, protocol.md 4), so a reused
/// worker needs no state, a rerun keeps its context and a suspended child
/// resumes from everything it had.
// Behaviours: E14.
pub(crate) fn run_request(child: &Session) -> RunRequest {
    let assignment = child
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default();
    RunRequest {
        assignment,
        reasoning_effort: child.reasoning_effort.clone(),
        messages: child.messages.clone(),
        token_budget: child.token_budget,
        task_list: child.task_list.clone(),
        agent_session_id: crate::usage::agent_session(child),
        approved: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::{ChildInfo, Message, ModelRef};

    #[test]
    fn e14_run_request_ships_the_whole_transcript_including_the_assignment() {
        let root = Session::new_root("p");
        let mut c = Session::new_child(&root, ChildInfo::new("r", "first"));
        c.messages = vec![
            Message::system("sys"),
            Message::user("first"),
            Message::assistant("echo: first"),
            Message::user("second"),
        ];
        c.reasoning_effort = Some("high".into());
        let r = run_request(&c);
        assert_eq!(r.assignment, "second");
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[2].content, "echo: first");
        assert_eq!(r.messages[3].content, "second");
        assert_eq!(r.reasoning_effort.as_deref(), Some("high"));
    }

    #[test]
    fn spec_carries_role_depth_model_tools_and_the_depth_cap() {
        let mut cfg = EngineConfig::new("/data".into());
        cfg.max_spawn_depth = 2;
        let mut root = Session::new_root("p");
        root.model = ModelRef::parse("openai/gpt");
        root.spawn_depth = 1;
        let mut c = Session::new_child(&root, ChildInfo::new("coder", "x"));
        c.metadata
            .insert(DISABLED_TOOLS_KEY.into(), serde_json::json!(["bash"]));
        let s = spec_for(&cfg, &c, "w-1");
        assert_eq!(s.identity.child_id, "w-1");
        assert_eq!(s.identity.role, "coder");
        assert_eq!(s.identity.depth, 2);
        assert!(!s.capabilities.nested_spawn, "depth 2 is at the cap of 2");
        assert_eq!(s.capabilities.max_spawn_depth, Some(2));
        assert_eq!(s.disabled_tools, Some(vec!["bash".to_owned()]));
        assert!(s.reusable);
        assert_eq!(s.fabric_dir, "/data/fabric");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn c11_s4_s5_limits_role_project_budget_and_tasks_reach_spec_and_run() {
        use bamboo_domain::{TaskItem, TaskItemStatus, TaskList, TokenBudget};
        let cfg = EngineConfig::new("/data".into());
        let mut root = Session::new_root("p");
        root.project_key = Some("/src/app".into());
        root.token_budget = Some(TokenBudget::new(10_000));
        root.task_list = Some(TaskList {
            items: vec![TaskItem {
                id: "1".into(),
                description: "plan".into(),
                status: TaskItemStatus::Pending,
            }],
        });
        let mut info = ChildInfo::new("reviewer", "x");
        info.max_rounds = Some(3);
        info.read_only = true;
        let c = Session::new_child(&root, info);
        let s = spec_for(&cfg, &c, "w");
        assert_eq!(s.limits.max_rounds, Some(3));
        assert!(s.capabilities.guardian_read_only);
        assert_eq!(s.identity.project_key.as_deref(), Some("/src/app"));
        let r = run_request(&c);
        let b = r.token_budget.expect("budget");
        assert_eq!(
            (b.compression_trigger_percent, b.compression_target_percent),
            (70, 35)
        );
        assert_eq!(r.task_list, root.task_list);
        let wire = serde_json::to_value(bamboo_subagent::frames::ParentFrame::Run(r)).unwrap();
        assert_eq!(wire["token_budget"]["compression_trigger_percent"], 70);
        assert_eq!(wire["task_list"]["items"][0]["status"], "pending");
    }

    #[test]
    fn passed_variables_reach_only_cli_adapter_specs() {
        let mut cfg = EngineConfig::new("/data".into());
        cfg.pass_env
            .insert("FOO_TOKEN".into(), bamboo_subagent::Secret::new("v"));
        let root = Session::new_root("p");
        let c = Session::new_child(&root, ChildInfo::new("cli", "x"));
        assert!(spec_for(&cfg, &c, "w").secrets.pass_env.is_empty());
        cfg.executor = ExecutorSpec::CliAdapter {
            command: "sh".into(),
            args: vec![],
        };
        let s = spec_for(&cfg, &c, "w");
        assert_eq!(s.secrets.pass_env["FOO_TOKEN"].expose(), "v");
    }
}
