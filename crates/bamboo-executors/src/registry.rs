//! The executor registry: each kind's front-door flag name, help line and
//! builder, declared once. The kinds themselves (Rust name and wire tag)
//! are declared once in `bamboo_subagent::spec::ExecutorKind`; a test here
//! checks that every kind has exactly one entry, and the front door's
//! per-kind options are an exhaustive `match` on the kind.

use std::sync::{Arc, LazyLock};

use bamboo_subagent::executor::echo::EchoExecutor;
use bamboo_subagent::executor::Executor;
use bamboo_subagent::spec::{ExecutorKind, ProvisionSpec};
use clap::builder::PossibleValue;

use super::{claude, cli, codex, llm};

/// Builds an executor from a spec of its kind, or says in one line why not.
pub type Builder = fn(&ProvisionSpec) -> Result<Arc<dyn Executor>, String>;

/// One executor kind as the worker and the front door know it.
#[derive(Debug)]
pub struct Entry {
    /// The kind.
    pub kind: ExecutorKind,
    /// Its value for `--executor` (`run`, and the worker's other front doors).
    pub flag: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Its builder.
    pub build: Builder,
}

/// Every executor this worker can run.
pub const ENTRIES: &[Entry] = &[
    Entry {
        kind: ExecutorKind::Echo,
        flag: "echo",
        about: "Echo the assignment (no model needed)",
        build: build_echo,
    },
    Entry {
        kind: ExecutorKind::CliAdapter,
        flag: "cli",
        about: "A command-line agent (claude -p, codex exec, any script)",
        build: build_cli,
    },
    Entry {
        kind: ExecutorKind::BambooRuntime,
        flag: "llm",
        about: "The built-in agent loop over an OpenAI-compatible endpoint",
        build: build_llm,
    },
    Entry {
        kind: ExecutorKind::ClaudeCode,
        flag: "claude",
        about: "Claude Code over its stream-json protocol (approvals relayed, sessions resumed)",
        build: build_claude,
    },
    Entry {
        kind: ExecutorKind::Codex,
        flag: "codex",
        about: "The Codex CLI (codex exec --json, or its app-server)",
        build: build_codex,
    },
];

fn build_echo(_: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    Ok(Arc::new(EchoExecutor))
}

fn build_cli(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    cli::build(spec).map_err(|e| e.to_string())
}

fn build_llm(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    llm::build(spec).map_err(|e| e.to_string())
}

fn build_claude(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    claude::build(spec).map_err(|e| e.to_string())
}

fn build_codex(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    codex::build(spec).map_err(|e| e.to_string())
}

/// The entry of `kind`.
pub fn entry(kind: ExecutorKind) -> Result<&'static Entry, String> {
    ENTRIES
        .iter()
        .find(|e| e.kind == kind)
        .ok_or_else(|| format!("this worker has no executor for kind {kind}"))
}

/// Builds the executor a spec asks for, or says in one line why it cannot.
pub fn build(spec: &ProvisionSpec) -> Result<Arc<dyn Executor>, String> {
    (entry(spec.executor.kind())?.build)(spec)
}

/// The value of an `--executor` flag: a kind, by its flag name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorFlag(pub ExecutorKind);

static FLAGS: LazyLock<Vec<ExecutorFlag>> =
    LazyLock::new(|| ENTRIES.iter().map(|e| ExecutorFlag(e.kind)).collect());

impl clap::ValueEnum for ExecutorFlag {
    fn value_variants<'a>() -> &'a [Self] {
        FLAGS.as_slice()
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        entry(self.0)
            .ok()
            .map(|e| PossibleValue::new(e.flag).help(e.about))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_entry_and_flag_names_are_unique() {
        for kind in ExecutorKind::ALL {
            assert_eq!(
                ENTRIES.iter().filter(|e| e.kind == *kind).count(),
                1,
                "{kind}"
            );
        }
        let mut flags: Vec<_> = ENTRIES.iter().map(|e| e.flag).collect();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), ENTRIES.len());
    }

    #[test]
    fn flags_parse_by_name() {
        use clap::ValueEnum;
        assert_eq!(
            ExecutorFlag::from_str("cli", false),
            Ok(ExecutorFlag(ExecutorKind::CliAdapter))
        );
        assert_eq!(
            ExecutorFlag::from_str("llm", false),
            Ok(ExecutorFlag(ExecutorKind::BambooRuntime))
        );
        assert!(ExecutorFlag::from_str("cli_adapter", false).is_err());
    }
}
