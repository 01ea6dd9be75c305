//! Logging to stderr for both modes, with no secret at any level: the HTTP,
//! TLS and WebSocket crates print whole requests (an `Authorization: Bearer`
//! header included) at trace level, so their trace output is never shown.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Crates whose trace output can carry request headers or frame payloads.
const TRANSPORT_CRATES: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    // The MCP server's HTTP transport sees every request's headers.
    "rmcp",
];

/// Installs the stderr logger. Without `RUST_LOG` a fixed level (warn) is
/// enough: the filter parser (and the regex code behind it) stays out of an
/// idle worker's memory. With it, `RUST_LOG` applies, except that the
/// transport crates are capped at debug.
pub fn init() {
    // Colour codes only for a person at a terminal, never into a file or pipe.
    let ansi = std::io::stderr().is_terminal();
    match std::env::var_os("RUST_LOG") {
        Some(_) => {
            let output = tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter(filter_fn(|meta| !hidden(meta)));
            tracing_subscriber::registry()
                .with(EnvFilter::from_default_env())
                .with(output)
                .init();
        }
        None => tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_max_level(Level::WARN)
            .init(),
    }
}

/// Whether a record is never shown: trace output of a transport crate.
fn hidden(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::TRACE && is_transport(meta.target())
}

/// Whether `target` (a module path, e.g. `tungstenite::handshake::client`)
/// belongs to one of [`TRANSPORT_CRATES`].
fn is_transport(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    TRANSPORT_CRATES.contains(&krate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_crates_are_recognised_by_their_module_paths() {
        assert!(is_transport("tungstenite::handshake::client"));
        assert!(is_transport("tokio_tungstenite"));
        assert!(is_transport("hyper::proto::h1::role"));
        assert!(is_transport("reqwest::connect"));
        assert!(!is_transport("bamboo_engine::pump"));
        assert!(!is_transport("tungstenite_lookalike"));
        assert!(!is_transport("bamboo_worker_stderr"));
    }
}
