//! Least-privilege credentials: the engine asks a resolver for the one
//! credential of the provider a child uses; nothing else enters its spec.
// Behaviours: E20.

use std::fmt;

use bamboo_subagent::spec::{ProviderCredential, Secrets};

/// Supplies per-provider credentials (from a vault, config, environment...).
pub trait CredentialResolver: Send + Sync + fmt::Debug {
    /// The credential for `provider`, if one is configured.
    fn credential(&self, provider: &str) -> Option<ProviderCredential>;
}

/// The secrets envelope for a child using `provider`: only that provider's
/// credential. A missing one is a warning, not a failure: the worker may still
/// run (echo needs none) and reports its own error otherwise.
pub fn secrets_for(
    resolver: Option<&dyn CredentialResolver>,
    provider: Option<&str>,
    child_id: &str,
) -> Secrets {
    let mut secrets = Secrets::default();
    let Some(provider) = provider else {
        return secrets;
    };
    match resolver.and_then(|r| r.credential(provider)) {
        // Guard against a resolver that hands back another provider's key.
        Some(c) if c.provider == provider => secrets.provider_credentials.push(c),
        _ => tracing::warn!(
            child = child_id,
            provider,
            "no credential configured for this provider; the child runs without one"
        ),
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_subagent::Secret;

    #[derive(Debug)]
    struct Vault;

    impl CredentialResolver for Vault {
        fn credential(&self, provider: &str) -> Option<ProviderCredential> {
            let key = match provider {
                "openai" => "sk-openai",
                "anthropic" => "sk-anthropic",
                _ => return None,
            };
            Some(ProviderCredential {
                provider: provider.into(),
                api_key: Secret::new(key),
                base_url: None,
                provider_type: None,
            })
        }
    }

    #[test]
    fn a_child_gets_only_its_own_providers_credential() {
        let s = secrets_for(Some(&Vault), Some("openai"), "c");
        assert_eq!(s.provider_credentials.len(), 1);
        assert_eq!(s.provider_credentials[0].api_key.expose(), "sk-openai");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("sk-anthropic"));
    }

    #[test]
    fn missing_credential_or_model_yields_an_empty_envelope() {
        assert!(secrets_for(Some(&Vault), Some("mistral"), "c")
            .provider_credentials
            .is_empty());
        assert!(secrets_for(None, Some("openai"), "c")
            .provider_credentials
            .is_empty());
        assert!(secrets_for(Some(&Vault), None, "c")
            .provider_credentials
            .is_empty());
    }
}
