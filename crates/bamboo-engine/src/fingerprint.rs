//! Worker fingerprint: everything baked into a worker at provision time.
//! Two specs with equal fingerprints yield interchangeable workers; any differing
//! axis yields a different pool key. The tool list is order-insensitive.
// Behaviours: E10.

use std::collections::BTreeSet;

use bamboo_subagent::spec::{ExecutorSpec, Placement, ProvisionSpec};

/// The pool key of a worker. Holds no secret, so `Debug` is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    executor: ExecutorSpec,
    placement: Placement,
    role: String,
    provider: Option<String>,
    model: Option<String>,
    workspace: Option<String>,
    disabled_tools: BTreeSet<String>,
    depth: u32,
    nested_spawn: bool,
    bypass: bool,
    enforce_permissions: bool,
    no_human_approver: bool,
    depth_cap: u32,
    /// Built into the executor when the worker starts.
    // Behaviours: C11.
    max_rounds: Option<u32>,
    /// The cost budget left, in micro-dollars (built into the executor).
    max_cost_micros: Option<u64>,
    read_only: bool,
    /// The project the worker's identity names.
    // Behaviours: S5.
    project_key: Option<String>,
    /// MCP config and skills dir, as canonical JSON text (opaque to the engine).
    extras: String,
}

impl Fingerprint {
    /// The fingerprint of a spec. Ignores identity ids, timeouts and secrets:
    /// secrets follow from the provider, which is an axis.
    pub fn of(spec: &ProvisionSpec) -> Self {
        if let Placement::Remote { .. } = spec.placement {
            return Self::remote(spec);
        }
        let caps = &spec.capabilities;
        let extras = serde_json::json!([caps.mcp, caps.skills_dir]).to_string();
        Self {
            executor: spec.executor.clone(),
            placement: spec.placement.clone(),
            role: spec.identity.role.clone(),
            provider: spec.model.as_ref().map(|m| m.provider.clone()),
            model: spec.model.as_ref().map(|m| m.model.clone()),
            workspace: spec.workspace.clone(),
            disabled_tools: spec.disabled_tools.iter().flatten().cloned().collect(),
            depth: spec.identity.depth,
            nested_spawn: caps.nested_spawn,
            bypass: caps.bypass,
            enforce_permissions: caps.enforce_permissions,
            no_human_approver: caps.no_human_approver,
            depth_cap: caps.spawn_depth_cap(),
            max_rounds: spec.limits.max_rounds,
            max_cost_micros: spec
                .limits
                .max_cost_usd
                .map(|c| (c * 1_000_000.0).round() as u64),
            read_only: caps.guardian_read_only,
            project_key: spec.identity.project_key.clone(),
            extras,
        }
    }
}

impl Fingerprint {
    /// A connection to a resident worker has nothing baked in (it never sees
    /// the spec; its executor is fixed by its own flags), so any child placed
    /// on the endpoint may reuse any parked connection to it: the placement
    /// is the whole key.
    fn remote(spec: &ProvisionSpec) -> Self {
        Self {
            executor: ExecutorSpec::Echo,
            placement: spec.placement.clone(),
            role: String::new(),
            provider: None,
            model: None,
            workspace: None,
            disabled_tools: BTreeSet::new(),
            depth: 0,
            nested_spawn: false,
            bypass: false,
            enforce_permissions: false,
            no_human_approver: false,
            depth_cap: 0,
            max_rounds: None,
            max_cost_micros: None,
            read_only: false,
            project_key: None,
            extras: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::ModelRef;
    use bamboo_subagent::spec::Identity;

    fn base() -> ProvisionSpec {
        serde_json::from_value(serde_json::json!({
            "identity": {"child_id": "c1", "parent_id": "p", "role": "researcher", "depth": 1},
            "executor": {"kind": "echo"},
            "fabric_dir": "/f",
            "model": {"provider": "openai", "model": "gpt"},
            "workspace": "/w",
            "disabled_tools": ["bash", "write"],
            "capabilities": {"max_spawn_depth": 4}
        }))
        .unwrap()
    }

    #[test]
    fn identity_ids_limits_and_secrets_do_not_split() {
        let a = base();
        let mut b = base();
        b.identity = Identity {
            child_id: "other".into(),
            parent_id: Some("q".into()),
            ..b.identity
        };
        b.limits.run_timeout_secs = Some(9);
        b.secrets.worker_auth_token = Some(bamboo_subagent::Secret::new("t"));
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn tool_order_and_duplicates_do_not_split() {
        let a = base();
        let mut b = base();
        b.disabled_tools = Some(vec!["write".into(), "bash".into(), "bash".into()]);
        assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn remote_connections_are_keyed_by_endpoint_only() {
        let on = |endpoint: &str, edit: fn(&mut ProvisionSpec)| {
            let mut s = base();
            s.placement = Placement::Remote {
                endpoint: endpoint.into(),
            };
            edit(&mut s);
            Fingerprint::of(&s)
        };
        let plain = on("wss://a:1", |_| {});
        assert_eq!(plain, on("wss://a:1", |s| s.identity.role = "coder".into()));
        assert_eq!(plain, on("wss://a:1", |s| s.identity.depth = 3));
        assert_ne!(plain, on("wss://b:1", |_| {}));
    }

    #[test]
    fn every_axis_splits() {
        type Edit = fn(&mut ProvisionSpec);
        let edits: Vec<(&str, Edit)> = vec![
            ("role", |s| s.identity.role = "coder".into()),
            ("provider", |s| s.model = ModelRef::parse("anthropic/gpt")),
            ("model", |s| s.model = ModelRef::parse("openai/other")),
            ("no model", |s| s.model = None),
            ("workspace", |s| s.workspace = Some("/elsewhere".into())),
            ("tools", |s| s.disabled_tools = Some(vec!["bash".into()])),
            ("depth", |s| s.identity.depth = 2),
            ("nested", |s| s.capabilities.nested_spawn = true),
            ("bypass", |s| s.capabilities.bypass = true),
            ("enforce", |s| s.capabilities.enforce_permissions = true),
            ("depth cap", |s| s.capabilities.max_spawn_depth = Some(2)),
            ("executor", |s| s.executor = ExecutorSpec::BambooRuntime),
            ("no human", |s| s.capabilities.no_human_approver = true),
            ("max rounds", |s| s.limits.max_rounds = Some(3)),
            ("read-only", |s| s.capabilities.guardian_read_only = true),
            ("project", |s| s.identity.project_key = Some("/p".into())),
            ("placement", |s| {
                s.placement = Placement::Remote {
                    endpoint: "wss://a:1".into(),
                }
            }),
        ];
        let reference = Fingerprint::of(&base());
        for (axis, edit) in edits {
            let mut s = base();
            edit(&mut s);
            assert_ne!(
                Fingerprint::of(&s),
                reference,
                "axis {axis} must split the pool"
            );
        }
    }
}
