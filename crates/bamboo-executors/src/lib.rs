//! Executors the worker can run, chosen by the spec's `executor.kind`
//! through the [`registry`]; and the executor flags ([`flags`]) that front
//! ends and resident workers turn into an [`choice::ExecutorChoice`] and a
//! worker spec.

pub mod choice;
pub mod claude;
pub mod cli;
pub mod codex;
pub mod env;
pub mod flags;
pub mod host;
pub mod llm;
pub mod proc;
pub mod registry;

// The helpers live in the dev-only crate `bamboo-testkit` (so they ship in no
// build of the worker); the unit tests reach them under their old path.
#[cfg(test)]
pub(crate) use bamboo_testkit as testkit;

use std::sync::Arc;

use bamboo_subagent::executor::Executor;
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};

/// Builds the executor a spec asks for, or says in one line why it cannot
/// (through [`registry`], where each kind is declared once).
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    // The external program runs unrestricted: read-only cannot be enforced.
    if spec.capabilities.guardian_read_only
        && matches!(spec.executor, ExecutorSpec::CliAdapter { .. })
    {
        return Err("capabilities.guardian_read_only cannot be enforced for a cli_adapter child (its program runs unrestricted): use bamboo_runtime, or unset it".into());
    }
    registry::build(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(executor: serde_json::Value) -> ProvisionSpec {
        let v = serde_json::json!({"identity": {"child_id": "c"}, "executor": executor, "fabric_dir": "/f"});
        ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("spec")
    }

    #[test]
    fn every_kind_builds_and_bad_cli_specs_say_why() {
        assert!(build(&spec(serde_json::json!({"kind": "echo"}))).is_ok());
        assert!(build(&spec(serde_json::json!({"kind": "bamboo_runtime"}))).is_ok());
        assert!(build(&spec(
            serde_json::json!({"kind": "cli_adapter", "command": "claude", "args": ["-p"]})
        ))
        .is_ok());
        let err = build(&spec(
            serde_json::json!({"kind": "cli_adapter", "command": " "}),
        ))
        .err();
        assert!(err
            .unwrap_or_default()
            .contains("cli_adapter.command is empty"));
    }
}
