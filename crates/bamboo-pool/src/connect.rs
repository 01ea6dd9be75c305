//! Dialling the NATS server: URL, authentication (token or creds file) and
//! TLS. Both sides (pool workers and the engine) connect the same way.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use bamboo_subagent::Secret;

use crate::error::PoolError;

/// How to reach and log in to the NATS server. Debug output never shows the
/// token.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma-separated: `nats://host:4222`, `tls://host:4222`.
    pub url: String,
    /// Token authentication.
    pub token: Option<Secret>,
    /// A `.creds` file (user JWT and NKey seed) for decentralized auth.
    pub creds_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Require TLS even without a custom CA.
    pub require_tls: bool,
    /// Client name shown in the server's monitoring.
    pub name: Option<String>,
}

impl NatsOptions {
    /// Options for `url` with no authentication.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Reads a token from `path` (its first line, trimmed): tokens never
    /// travel on a command line.
    pub fn token_file(mut self, path: &std::path::Path) -> Result<Self, PoolError> {
        let text = std::fs::read_to_string(path).map_err(|source| PoolError::File {
            what: "--token-file",
            path: path.display().to_string(),
            source,
        })?;
        let token = text.lines().next().unwrap_or_default().trim().to_owned();
        self.token = (!token.is_empty()).then(|| Secret::new(token));
        Ok(self)
    }

    /// Connects, failing at once (no retry loop) when the server is down or
    /// refuses the credentials; once connected the client reconnects forever.
    pub async fn connect(&self) -> Result<async_nats::Client, PoolError> {
        let mut opts = ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        if let Some(name) = &self.name {
            opts = opts.name(name);
        }
        if let Some(token) = &self.token {
            opts = opts.token(token.expose().to_owned());
        }
        if let Some(path) = &self.creds_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| PoolError::File {
                    what: "--creds",
                    path: path.display().to_string(),
                    source,
                })?;
        }
        if let Some(ca) = &self.tls_ca {
            if let Err(source) = std::fs::metadata(ca) {
                return Err(PoolError::File {
                    what: "--tls-ca",
                    path: ca.display().to_string(),
                    source,
                });
            }
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        } else if self.require_tls {
            opts = opts.require_tls(true);
        }
        opts.connect(self.url.as_str())
            .await
            .map_err(|e| PoolError::Connect {
                url: self.url.clone(),
                reason: explain(e.kind(), &e.to_string()),
            })
    }
}

/// The client's error plus what to do about it.
fn explain(kind: ConnectErrorKind, text: &str) -> String {
    let hint = match kind {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            "the server refused the credentials: check --token-file or --creds against the server's authorization config"
        }
        ConnectErrorKind::Tls => {
            "TLS failed: check --tls-ca and that the server's certificate names this host"
        }
        ConnectErrorKind::TimedOut | ConnectErrorKind::Io | ConnectErrorKind::Dns => {
            "is nats-server running there (with -js) and reachable from this host?"
        }
        _ => "check the URL (nats://host:4222)",
    };
    format!("{text}; {hint}")
}
