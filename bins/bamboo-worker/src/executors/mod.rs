//! Executors the worker can run, chosen by the spec's `executor.kind`.

use std::sync::Arc;

use bamboo_subagent::executor::echo::EchoExecutor;
use bamboo_subagent::executor::Executor;
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};

/// Builds the executor a spec asks for, or says in one line why it cannot.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    match &spec.executor {
        ExecutorSpec::Echo => Ok(Arc::new(EchoExecutor)),
        other => Err(format!(
            "executor kind {:?} is not supported by this worker build",
            other.kind()
        )),
    }
}
