//! What can go wrong talking to a pool.

/// A pool operation failed. Every message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The pool name cannot be a subject token.
    #[error("pool name {0:?} is not valid: use 1-64 letters, digits, '-' or '_'")]
    BadPoolName(String),
    /// Connecting to the NATS server failed.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The server URL.
        url: String,
        /// Why, with a hint.
        reason: String,
    },
    /// A credentials, token or CA file could not be read.
    #[error("cannot read {what} {path}: {source}; check the path and its permissions")]
    File {
        /// Which file (`--creds`, `--token-file`, `--tls-ca`).
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JetStream call failed.
    #[error("NATS JetStream {what} failed: {reason}; check that the server runs with JetStream (-js) and that this user may use the pool's subjects")]
    JetStream {
        /// What was attempted.
        what: String,
        /// The server's or client's error.
        reason: String,
    },
    /// No worker took a queued run in time.
    #[error("no worker in pool {pool} took the run within {}s; start workers with `bamboo-worker join --nats {url} --pool {pool}` or raise the queue timeout", waited.as_secs())]
    QueueTimeout {
        /// The pool.
        pool: String,
        /// How long the run waited.
        waited: std::time::Duration,
        /// The server, for the hint.
        url: String,
    },
    /// The worker serving a run stopped renewing its lease.
    #[error("pool worker {worker} on {host} stopped renewing its lease in pool {pool} (it died or lost NATS); the run is not rerun automatically: run the child again")]
    WorkerLost {
        /// The pool.
        pool: String,
        /// The worker's id.
        worker: String,
        /// Its host.
        host: String,
    },
}

impl PoolError {
    /// A JetStream failure of `what`.
    pub(crate) fn js(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what: what.into(),
            reason: e.to_string(),
        }
    }
}
