//! The environment a child program sees.
//!
//! Child programs (the `cli_adapter` command, the `run_command` tool) inherit
//! the worker's environment minus anything that looks secret. [`child_env`] is
//! **the one place a secret enters a child environment**: only the credential
//! of the child's own provider, under that provider's usual variable name, and
//! only when the caller passes it (the `cli_adapter` does; model-driven shell
//! commands do not). [`pass_through`] then adds the variables the parent passed
//! on purpose (`run --pass-env NAME`, spec `secrets.pass_env`), for
//! `cli_adapter` programs only.

use std::collections::BTreeMap;
use std::ffi::OsString;

use bamboo_subagent::Secret;

/// Prefixes of model-provider variables (base URLs, org ids, ...), stripped too:
/// a child must not be steered to another account or endpoint by the worker's
/// own configuration.
const PROVIDER_PREFIXES: &[&str] = &[
    "OPENAI_",
    "ANTHROPIC_",
    "GEMINI_",
    "GOOGLE_API",
    "GOOGLE_GENAI",
    "VERTEX",
    "AZURE_OPENAI",
    "AWS_",
    "MISTRAL_",
    "GROQ_",
    "DEEPSEEK_",
    "OPENROUTER_",
    "COHERE_",
    "XAI_",
    "TOGETHER_",
    "FIREWORKS_",
    "PERPLEXITY_",
    "HF_",
    "HUGGINGFACE",
    "OLLAMA_",
    "BAMBOO_",
];

/// Whether a variable name must not reach a child.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    bamboo_subagent::secret::is_secret_env_name(name)
        || PROVIDER_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// The usual environment variable for a provider's API key: `openai` →
/// `OPENAI_API_KEY`, `anthropic` → `ANTHROPIC_API_KEY`, `gemini`/`google` →
/// `GEMINI_API_KEY`, anything else → `<PROVIDER>_API_KEY` upper-cased (with
/// characters other than letters and digits turned into `_`).
pub fn provider_key_var(provider: &str) -> String {
    match provider.to_ascii_lowercase().as_str() {
        "openai" => "OPENAI_API_KEY".into(),
        "anthropic" => "ANTHROPIC_API_KEY".into(),
        "gemini" | "google" => "GEMINI_API_KEY".into(),
        other => {
            let name: String = other
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{name}_API_KEY")
        }
    }
}

/// The credential one child may see: its provider's key and the variable it
/// goes under. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct ProviderKey {
    /// Variable name, e.g. `OPENAI_API_KEY`.
    pub var: String,
    /// The key.
    pub key: Secret,
}

impl ProviderKey {
    /// The key for `provider` under its usual variable name.
    pub fn new(provider: &str, key: Secret) -> Self {
        Self {
            var: provider_key_var(provider),
            key,
        }
    }
}

/// Builds a child environment from `base` (usually `std::env::vars_os()`):
/// every non-secret variable, plus `key` when given. Use with
/// `Command::env_clear()`, then `envs(..)`.
pub fn child_env(
    base: impl IntoIterator<Item = (OsString, OsString)>,
    key: Option<&ProviderKey>,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = base
        .into_iter()
        .filter(|(name, _)| !is_secret_name(&name.to_string_lossy()))
        .collect();
    if let Some(k) = key {
        // The one place a secret enters a child environment (see module docs).
        out.push((k.var.clone().into(), k.key.expose().into()));
    }
    out
}

/// Adds the variables passed on purpose (spec `secrets.pass_env`) to `env`,
/// after the scrub, so even a secret-looking name gets through. A passed
/// variable replaces one of the same name. A name no environment can hold
/// (empty, or with `=` or NUL) or a value with NUL is skipped with a warning.
pub fn pass_through(env: &mut Vec<(OsString, OsString)>, passed: &BTreeMap<String, Secret>) {
    for (name, value) in passed {
        if name.is_empty() || name.contains(['=', '\0']) || value.expose().contains('\0') {
            tracing::warn!(variable = %name.escape_debug(), "skipping a passed environment variable that cannot be set (empty name, '=' or NUL)");
            continue;
        }
        env.retain(|(n, _)| n.to_str() != Some(name.as_str()));
        // Set on purpose by whoever started the run (see module docs).
        env.push((name.into(), value.expose().into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(a, b)| (OsString::from(a), OsString::from(b)))
            .collect()
    }

    #[test]
    fn secrets_and_provider_vars_are_stripped_case_insensitively() {
        let base = env(&[
            ("PATH", "/bin"),
            ("HOME", "/h"),
            ("openai_api_key", "x"),
            ("GITHUB_TOKEN", "x"),
            ("db_password", "x"),
            ("MY_SECRET_THING", "x"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "x"),
            ("OPENAI_BASE_URL", "http://x"),
            ("AWS_REGION", "eu"),
        ]);
        let out = child_env(base, None);
        let names: Vec<_> = out.iter().map(|(n, _)| n.to_string_lossy()).collect();
        assert_eq!(names, vec!["PATH", "HOME"]);
    }

    #[test]
    fn only_the_given_provider_key_is_added() {
        let key = ProviderKey::new("anthropic", Secret::new("sk-ant"));
        let out = child_env(env(&[("ANTHROPIC_API_KEY", "old")]), Some(&key));
        assert_eq!(out, env(&[("ANTHROPIC_API_KEY", "sk-ant")]));
        assert!(!format!("{key:?}").contains("sk-ant"));
    }

    fn passed(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn passed_variables_survive_the_scrub_and_replace_inherited_ones() {
        let base = env(&[
            ("PATH", "/bin"),
            ("FOO_TOKEN", "scrubbed"),
            ("MY_VAR", "old"),
        ]);
        let mut out = child_env(base, None);
        assert_eq!(out, env(&[("PATH", "/bin"), ("MY_VAR", "old")]));
        pass_through(
            &mut out,
            &passed(&[("FOO_TOKEN", "tok-1"), ("MY_VAR", "new")]),
        );
        assert_eq!(
            out,
            env(&[("PATH", "/bin"), ("FOO_TOKEN", "tok-1"), ("MY_VAR", "new")])
        );
    }

    #[test]
    fn passing_nothing_changes_nothing_and_bad_names_are_skipped() {
        let mut out = env(&[("PATH", "/bin")]);
        pass_through(&mut out, &BTreeMap::new());
        assert_eq!(out, env(&[("PATH", "/bin")]));
        pass_through(
            &mut out,
            &passed(&[("", "x"), ("A=B", "x"), ("NUL", "a\0b")]),
        );
        assert_eq!(out, env(&[("PATH", "/bin")]));
    }

    #[test]
    fn provider_variable_names() {
        assert_eq!(provider_key_var("openai"), "OPENAI_API_KEY");
        assert_eq!(provider_key_var("Gemini"), "GEMINI_API_KEY");
        assert_eq!(provider_key_var("google"), "GEMINI_API_KEY");
        assert_eq!(provider_key_var("my-llm"), "MY_LLM_API_KEY");
    }
}
