//! The executor flags of the front ends (`run` and `serve` flatten the same
//! struct), and how they become an [`ExecutorChoice`] and a worker spec.
//! Provider keys are read from this process's environment, once, here.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bamboo_domain::ModelRef;
use bamboo_subagent::spec::{
    Capabilities, ClaudeCodeSpec, CodexSpec, ExecutorKind, ExecutorSpec, ProvisionSpec,
};
use bamboo_subagent::Secret;

use crate::choice::{ExecutorChoice, Provider};
use crate::env::provider_key_var;
use crate::registry::ExecutorFlag;

/// Executor flags, shared by `run` and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// Which executor runs the assignments.
    #[arg(help_heading = "Executor", long, value_enum, default_value = "echo")]
    pub executor: ExecutorFlag,
    /// cli: the agent program to run (or give it after `--`).
    #[arg(help_heading = "Executor", long, value_name = "PROG")]
    pub command: Option<String>,
    /// cli: an argument for the program (repeatable); `{assignment}` is replaced
    /// by the assignment, otherwise the assignment arrives on its stdin.
    #[arg(
        help_heading = "Executor",
        long = "arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
    /// llm (required): the model as provider/model, e.g. openai/gpt-4o-mini.
    /// cli (optional): the provider whose API key the program gets in its
    /// environment, under its usual variable; without it the program gets no key.
    #[arg(help_heading = "Executor", long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// llm: base URL of an OpenAI-compatible API [default: $OPENAI_BASE_URL,
    /// else https://api.openai.com/v1]. A loopback URL (a local model
    /// server) needs no key when the key variable is unset.
    #[arg(help_heading = "Executor", long, value_name = "URL")]
    pub base_url: Option<String>,
    /// llm, cli: environment variable holding the API key [default: the provider's
    /// usual one, e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, else
    /// <PROVIDER>_API_KEY]. The key travels to workers only in their stdin spec,
    /// never in their argv or env; a cli program gets it in its own env.
    /// llm: `--api-key-env ''` sends no key (a keyless endpoint).
    #[arg(help_heading = "Executor", long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Working directory of the runs [default: the current directory].
    #[arg(help_heading = "Executor", long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// cli: pass the environment variable NAME from here to the cli program,
    /// on purpose (repeatable).
    ///
    /// A cli program starts with the worker's environment minus (1) every
    /// variable whose name contains KEY, TOKEN, SECRET, PASSWORD, PASSWD or
    /// CREDENTIAL, in any case, and (2) every model-provider variable, by
    /// prefix: OPENAI_, ANTHROPIC_, GEMINI_, GOOGLE_API, GOOGLE_GENAI,
    /// VERTEX, AZURE_OPENAI, AWS_, MISTRAL_, GROQ_, DEEPSEEK_, OPENROUTER_,
    /// COHERE_, XAI_, TOGETHER_, FIREWORKS_, PERPLEXITY_, HF_, HUGGINGFACE,
    /// OLLAMA_, BAMBOO_. `--pass-env NAME` puts NAME back with its value from
    /// this environment, even when it matches those rules. The value travels
    /// in the worker's stdin spec, never in argv or a worker's environment.
    /// A NAME that is not set here is refused (exit 2).
    #[arg(help_heading = "Executor", long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// claude, codex: the agent program [default: `claude` / `codex` found on PATH].
    #[arg(help_heading = "Executor", long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    /// claude: Claude Code's --permission-mode (default, acceptEdits, plan,
    /// bypassPermissions) [default: default, so every gated tool asks];
    /// codex: its approval policy (untrusted, on-request, never).
    #[arg(help_heading = "Executor", long, value_name = "MODE")]
    pub permission_mode: Option<String>,
    /// cli: the program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROG ARGS")]
    pub trailing: Vec<String>,
}

impl ExecutorArgs {
    /// The executor the flags describe, with its key read from the environment.
    pub fn choice(&self) -> anyhow::Result<ExecutorChoice> {
        let a = self;
        let cli_flags = a.command.is_some() || !a.args.is_empty() || !a.trailing.is_empty();
        if cli_flags && a.executor.0 != ExecutorKind::CliAdapter {
            bail!("--command, --arg and `-- PROG` apply only to --executor cli");
        }
        let model_flags = a.model.is_some() || a.api_key_env.is_some();
        if model_flags && a.executor.0 == ExecutorKind::Echo {
            bail!("--model and --api-key-env apply only to --executor llm, cli, claude or codex");
        }
        let agent = matches!(a.executor.0, ExecutorKind::ClaudeCode | ExecutorKind::Codex);
        if a.base_url.is_some() && !(agent || a.executor.0 == ExecutorKind::BambooRuntime) {
            bail!("--base-url applies only to --executor llm, claude or codex");
        }
        if (a.agent_bin.is_some() || a.permission_mode.is_some()) && !agent {
            bail!("--agent-bin and --permission-mode apply only to --executor claude or codex");
        }
        if !a.pass_env.is_empty() && a.executor.0 != ExecutorKind::CliAdapter {
            bail!("--pass-env applies only to --executor cli (only cli programs get an environment from it)");
        }
        match a.executor.0 {
            ExecutorKind::Echo => Ok(ExecutorChoice::Echo),
            ExecutorKind::CliAdapter => {
                let (command, args) = match (&a.command, a.trailing.split_first()) {
                    (Some(_), Some(_)) => bail!("give the program either with --command or after `--`, not both"),
                    (Some(c), None) => (c.clone(), a.args.clone()),
                    (None, Some((c, rest))) if a.args.is_empty() => (c.clone(), rest.to_vec()),
                    (None, Some(_)) => bail!("--arg goes with --command; after `--` put the arguments themselves"),
                    (None, None) => bail!("--executor cli needs a program: --command PROG [--arg ARG]... or `-- PROG ARGS...`"),
                };
                if a.api_key_env.is_some() && a.model.is_none() {
                    bail!("--api-key-env needs --model provider/model to say whose key it is");
                }
                if a.api_key_env.as_deref() == Some("") {
                    bail!("--api-key-env '' (no key) applies only to --executor llm: name the variable holding the program's key, or leave out --model");
                }
                let provider = a
                    .model
                    .as_deref()
                    .map(|raw| a.provider(raw, None))
                    .transpose()?;
                Ok(ExecutorChoice::Cli {
                    command,
                    args,
                    provider,
                })
            }
            ExecutorKind::BambooRuntime => {
                let raw = a
                    .model
                    .as_deref()
                    .context("--executor llm needs --model provider/model")?;
                let base_url = a.base_url.clone().or_else(base_url_from_env);
                Ok(ExecutorChoice::Llm {
                    provider: a.provider(raw, base_url)?,
                })
            }
            ExecutorKind::ClaudeCode | ExecutorKind::Codex => self.agent_choice(),
        }
    }

    /// `--executor claude|codex`: the agent's spec and, when its key variable
    /// is set, the provider credential it gets in its own environment.
    fn agent_choice(&self) -> anyhow::Result<ExecutorChoice> {
        let claude = self.executor.0 == ExecutorKind::ClaudeCode;
        let (provider, flag) = if claude {
            ("anthropic", "claude")
        } else {
            ("openai", "codex")
        };
        let model = self.model.as_deref().map(|m| {
            m.strip_prefix(provider)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(m)
                .to_owned()
        });
        if model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            bail!("--model is empty: give the agent's model name, e.g. --model claude-sonnet-4-5");
        }
        let binary = self
            .agent_bin
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        if let Some(bin) = &binary {
            if !std::path::Path::new(bin).is_file() {
                bail!("--agent-bin {bin} is not a file: give the path of the {flag} program, or drop the flag to use `{flag}` from PATH");
            }
        }
        let var = self
            .api_key_env
            .clone()
            .unwrap_or_else(|| provider_key_var(provider));
        let key = std::env::var(&var).ok().filter(|k| !k.trim().is_empty());
        if key.is_none() && self.api_key_env.is_some() {
            bail!("--api-key-env {var}: the variable is not set; export the API key there, or drop the flag to let the agent use its own login");
        }
        let credential = key.map(|key| Provider {
            model: ModelRef {
                provider: provider.to_owned(),
                model: model.clone().unwrap_or_else(|| "default".into()),
            },
            base_url: self.base_url.clone(),
            api_key: Secret::new(key),
        });
        if credential.is_none() && self.base_url.is_some() {
            bail!("--base-url needs an API key for --executor {flag}: export {var} (or name the variable with --api-key-env)");
        }
        let spec = if claude {
            ExecutorSpec::ClaudeCode(ClaudeCodeSpec {
                binary,
                model,
                permission_mode: self.permission_mode.clone(),
                ..ClaudeCodeSpec::default()
            })
        } else {
            ExecutorSpec::Codex(CodexSpec {
                binary,
                model,
                approval_policy: self.permission_mode.clone(),
                base_url: self.base_url.clone(),
                ..CodexSpec::default()
            })
        };
        Ok(ExecutorChoice::Agent {
            spec,
            provider: credential,
        })
    }

    /// The model `raw` and its key, from `--api-key-env` or the provider's
    /// usual variable. `base_url` is the llm endpoint (`None` for cli): with
    /// `--api-key-env ''`, or a loopback endpoint and the variable unset,
    /// the key is empty (no key is sent).
    fn provider(&self, raw: &str, base_url: Option<String>) -> anyhow::Result<Provider> {
        let model = ModelRef::parse(raw).with_context(|| {
            format!("--model {raw:?} is not provider/model (e.g. openai/gpt-4o-mini)")
        })?;
        if self.api_key_env.as_deref() == Some("") {
            return Ok(Provider {
                model,
                base_url,
                api_key: Secret::new(""),
            });
        }
        let var = self
            .api_key_env
            .clone()
            .unwrap_or_else(|| provider_key_var(&model.provider));
        let key = std::env::var(&var).ok().filter(|k| !k.trim().is_empty());
        let key = match key {
            Some(k) => k,
            // A model server on this machine usually takes no key.
            None if base_url.as_deref().is_some_and(is_loopback_url) => String::new(),
            None => bail!(
                "environment variable {var} is not set: export the API key there, name another variable with --api-key-env, or for a keyless endpoint give --api-key-env ''"
            ),
        };
        Ok(Provider {
            model,
            base_url,
            api_key: Secret::new(key),
        })
    }

    /// The workspace: the flag, else the current directory; it must exist.
    pub fn workspace(&self) -> anyhow::Result<PathBuf> {
        let workspace = match &self.workspace {
            Some(w) => w.clone(),
            None => std::env::current_dir()
                .context("cannot read the current directory; pass --workspace")?,
        };
        if !workspace.is_dir() {
            bail!("--workspace {} is not a directory", workspace.display());
        }
        Ok(workspace)
    }
}

/// `OPENAI_BASE_URL` from this environment (the OpenAI SDKs' variable), when
/// `--base-url` is not given; blank counts as unset.
fn base_url_from_env() -> Option<String> {
    std::env::var("OPENAI_BASE_URL")
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
}

/// Whether `url`'s host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `--pass-env` variables with their values from this environment.
pub fn passed_env(names: &[String]) -> anyhow::Result<Vec<(String, Secret)>> {
    names
        .iter()
        .map(|name| {
            if name.is_empty() || name.contains(['=', '\0']) {
                bail!("--pass-env {name:?} is not a variable name: give the bare NAME, without `=value`");
            }
            match std::env::var_os(name) {
                None => bail!("--pass-env {name}: the variable is not set in this environment; export it first, or drop the flag"),
                Some(v) => match v.into_string() {
                    Ok(v) => Ok((name.clone(), Secret::new(v))),
                    Err(_) => bail!("--pass-env {name}: its value is not valid UTF-8; only UTF-8 values can be passed"),
                },
            }
        })
        .collect()
}

/// The spec a worker process builds its executor from when no parent
/// provisions it (a resident worker): the executor, model, key, workspace;
/// gated actions ask the connected parent (fail closed).
pub fn self_spec(
    choice: &ExecutorChoice,
    workspace: &std::path::Path,
    pass_env: Vec<(String, Secret)>,
    name: &str,
) -> ProvisionSpec {
    let executor = choice.spec();
    let provider = choice.provider();
    let mut spec = ProvisionSpec::new(name, executor, "");
    spec.workspace = Some(workspace.to_string_lossy().into_owned());
    spec.reusable = true;
    if let Some(p) = provider {
        spec.model = Some(p.model.clone());
        spec.secrets.provider_credentials = vec![p.credential()];
    }
    spec.secrets.pass_env = pass_env.into_iter().collect();
    spec.capabilities = Capabilities {
        enforce_permissions: true,
        nested_spawn: true,
        ..Capabilities::default()
    };
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_told_from_remote_ones() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:11434/v1",
            "http://[::1]:8000/v1",
            "http://127.1.2.3/v1",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.7:8000/v1",
            "not a url",
            "http://localhost.example.com/v1",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
