//! Which executor the children run, and the model and credential they get:
//! the one mapping from the executor flags' choice to a worker spec's
//! executor and provider credential.

use bamboo_domain::ModelRef;
use bamboo_subagent::spec::{ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;

/// Which executor the children run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorChoice {
    /// Echo the assignment back.
    Echo,
    /// Run a command-line agent.
    Cli {
        /// The program.
        command: String,
        /// Its arguments (`{assignment}` is replaced).
        args: Vec<String>,
        /// The provider whose key the program gets in its environment
        /// (its usual variable, e.g. `ANTHROPIC_API_KEY`); none: no key.
        provider: Option<Provider>,
    },
    /// The agent loop over an OpenAI-compatible endpoint.
    Llm {
        /// The model and its key.
        provider: Provider,
    },
    /// A coding agent (Claude Code, Codex) as the child's engine.
    Agent {
        /// Its `claude_code` or `codex` spec.
        spec: ExecutorSpec,
        /// The key (and base URL) it gets in its own environment; none: the
        /// agent's own login.
        provider: Option<Provider>,
    },
}

/// A model and the credential of its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// `provider/model`.
    pub model: ModelRef,
    /// API base URL, when not the provider's default.
    pub base_url: Option<String>,
    /// The API key, read from the environment of `run`.
    pub api_key: Secret,
}

impl ExecutorChoice {
    /// The model and credential the children get, if any.
    pub fn provider(&self) -> Option<&Provider> {
        match self {
            Self::Echo => None,
            Self::Cli { provider, .. } | Self::Agent { provider, .. } => provider.as_ref(),
            Self::Llm { provider } => Some(provider),
        }
    }

    /// The worker spec's executor for this choice.
    pub fn spec(&self) -> ExecutorSpec {
        match self {
            Self::Echo => ExecutorSpec::Echo,
            Self::Cli { command, args, .. } => ExecutorSpec::CliAdapter {
                command: command.clone(),
                args: args.clone(),
            },
            Self::Llm { .. } => ExecutorSpec::BambooRuntime,
            Self::Agent { spec, .. } => spec.clone(),
        }
    }
}

impl Provider {
    /// The credential a worker gets for this provider (OpenAI-compatible).
    pub fn credential(&self) -> ProviderCredential {
        ProviderCredential {
            provider: self.model.provider.clone(),
            api_key: self.api_key.clone(),
            base_url: self.base_url.clone(),
            provider_type: Some("openai".into()),
        }
    }
}
