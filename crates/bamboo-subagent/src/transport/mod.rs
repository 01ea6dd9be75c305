//! The WebSocket transport (F7, F8): the worker's server side and the parent's
//! client side of protocol.md section 4.
//!
//! Both sides write through a dedicated writer task that feeds frames into the
//! socket's buffer and flushes only when no further frame is queued, and both
//! set `TCP_NODELAY`: a flush per frame and Nagle's algorithm are what make
//! small-frame streams slow.

pub mod client;
pub mod server;
mod writer;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

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
    /// The WebSocket handshake or stream failed.
    #[error("websocket error with {endpoint}: {source}")]
    WebSocket {
        /// The endpoint.
        endpoint: String,
        /// The underlying error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
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
