//! Ctrl-C and SIGTERM: the first asks for a graceful stop (cancel every child,
//! wait a bounded time, print the summary, exit 130); a second one stops at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGWINCH: the terminal changed size, so the status area is redrawn at
/// once to its new width.
#[derive(Debug)]
pub struct Resizes(Option<Signal>);

impl Resizes {
    /// Listens for resizes (none when the handler cannot be installed).
    pub fn install() -> Self {
        Self(signal(SignalKind::window_change()).ok())
    }

    /// The next resize; never, without a handler.
    pub async fn next(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

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
