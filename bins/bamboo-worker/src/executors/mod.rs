//! Executors the worker can run, chosen by the spec's `executor.kind`.

pub mod bench;
pub mod cli;
pub mod env;
pub mod host;
pub mod llm;
pub mod proc;
pub mod testkit;

use std::sync::Arc;

use bamboo_subagent::executor::echo::EchoExecutor;
use bamboo_subagent::executor::Executor;
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};

/// Builds the executor a spec asks for, or says in one line why it cannot.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    match &spec.executor {
        ExecutorSpec::Echo => Ok(Arc::new(EchoExecutor)),
        ExecutorSpec::CliAdapter { .. } => cli::build(spec).map_err(|e| e.to_string()),
        ExecutorSpec::BambooRuntime => llm::build(spec).map_err(|e| e.to_string()),
    }
}
