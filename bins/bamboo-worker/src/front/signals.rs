//! Ctrl-C and SIGTERM: the first asks for a graceful stop (cancel every child,
//! wait a bounded time, print the summary, exit 130); a second one stops at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals `run` reacts to.
#[derive(Debug)]
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Installs the handlers (before any child starts).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next SIGINT or SIGTERM; its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
