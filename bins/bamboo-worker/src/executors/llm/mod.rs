//! The `bamboo_runtime` executor (in progress).
use bamboo_subagent::executor::Executor;
use bamboo_subagent::spec::ProvisionSpec;
use std::sync::Arc;

/// Placeholder.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    Err(format!(
        "executor kind {:?} is not supported by this worker build",
        spec.executor.kind()
    ))
}
