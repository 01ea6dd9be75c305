//! The WebSocket transport (F7, F8): the worker's server side and the parent's
//! client side of protocol.md section 4.
//!
//! Both sides write through a dedicated writer task that feeds frames into the
//! socket's buffer and flushes only when no further frame is queued, and both
//! set `TCP_NODELAY`: a flush per frame and Nagle's algorithm are what make
//! small-frame streams slow.
//!
//! Every wait is bounded (see docs/operations.md, "Timeouts"): TCP connect and
//! the TLS + WebSocket handshake on the client, the handshake (with the token
//! check) on the server, and the link itself by [`Keepalive`]: both sides
//! ping, and a link with no frame at all for `timeout` is dead.

pub mod accept;
pub mod client;
mod keepalive;
pub mod server;
mod writer;

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use keepalive::Keepalive;

/// Default bound on TCP connect, and on the TLS + WebSocket handshake, each.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default largest frame either side accepts: 16 MiB. A larger frame closes
/// that connection (never the process).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// A transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint is not a `ws://` or `wss://` URL.
    #[error("invalid endpoint {0:?}: expected ws://host:port or wss://host:port")]
    BadEndpoint(String),
    /// TCP connect failed.
    #[error("cannot connect to {endpoint}: {source} (is the worker running?)")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The worker refused the bearer token.
    #[error("worker at {0} refused the connection: missing or wrong bearer token (401)")]
    Unauthorized(String),
    /// A resident worker is serving as many runs as it may (HTTP 503).
    #[error("worker at {endpoint} is busy: {detail} (503); retry later, raise its --max-runs, or lower this endpoint's connection cap (`run --remote-max`)")]
    Busy {
        /// The endpoint.
        endpoint: String,
        /// What the worker said.
        detail: String,
    },
    /// The worker answered the upgrade with another HTTP error.
    #[error("worker at {endpoint} refused the upgrade with HTTP {status}: {detail}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// What the worker said.
        detail: String,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, or the
    /// other side does not speak TLS).
    #[error("TLS handshake with {endpoint} failed: {detail}; check the CA certificate (--ca-cert) and that the worker serves TLS (or use ws:// for a plain listener)")]
    TlsHandshake {
        /// The endpoint.
        endpoint: String,
        /// The TLS error.
        detail: String,
    },
    /// A `wss://` endpoint answered the TLS hello in plain text: it is a
    /// plain (`ws://`) listener. Told at its first answer, not after the
    /// handshake bound.
    #[error("{endpoint}: this endpoint does not speak TLS (it answered in plain text): use ws:// for it, or give the worker a certificate (serve --tls-cert/--tls-key, or --tls-self-signed NAME) and keep wss://")]
    NotTls {
        /// The endpoint.
        endpoint: String,
    },
    /// The WebSocket handshake or stream failed.
    #[error("websocket error with {endpoint}: {source}")]
    WebSocket {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A bounded step of opening the link (TCP connect, handshake) did not
    /// finish in time.
    #[error("{step} with {endpoint} did not finish within {}s: the worker is stalled or unreachable", waited.as_secs_f32())]
    Timeout {
        /// What timed out: "TCP connect" or "WebSocket handshake".
        step: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The bound that passed.
        waited: Duration,
    },
    /// The peer sent no frame at all (no pong, ping or data) for the
    /// keepalive limit: it is frozen or the network path is cut.
    #[error("worker link {endpoint} silent for {}s (no pong): the worker is frozen or unreachable", waited.as_secs_f32())]
    Silent {
        /// The endpoint.
        endpoint: String,
        /// The keepalive limit that passed.
        waited: Duration,
    },
    /// TLS could not be set up (bad root certificate, no protocol versions).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// An I/O error on the listener or socket.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn ws_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes))
}
