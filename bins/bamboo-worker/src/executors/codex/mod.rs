//! The `codex` executor: the Codex CLI as the child's engine. Not driven
//! yet: a spec of this kind is refused with a clear error, so a parent
//! learns at once that this worker cannot run it.

use std::sync::Arc;

use bamboo_subagent::executor::Executor;
use bamboo_subagent::spec::ProvisionSpec;

/// Why a `codex` spec cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodexConfigError {
    /// This build does not drive Codex yet.
    #[error("executor kind codex is not implemented by this worker yet: use --executor claude, cli or llm")]
    NotYet,
}

/// Builds the registry entry for a `codex` spec.
pub fn build(_spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, CodexConfigError> {
    Err(CodexConfigError::NotYet)
}
