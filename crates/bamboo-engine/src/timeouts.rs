//! The engine's time limits: watchdog caps, worker start and link bounds,
//! cancel grace, heartbeat, idle retirement.
//!
//! [`Timeouts`] bound every wait between engine and worker
//! (docs/operations.md, "Timeouts"): spawn to ready (`register`), TCP connect
//! (`connect`), TLS + WebSocket handshake (`handshake`), and an open link by
//! keepalive (a ping every 2 s; no frame at all for 8 s and the link is
//! dead, so a frozen worker or a cut connection ends its run as `error` in
//! seconds rather than after the 15-minute idle cap). A worker that is only
//! thinking still answers pings.

use std::time::Duration;

use bamboo_subagent::transport::client::ClientOptions;
use bamboo_subagent::transport::Keepalive;

/// Time limits of the engine. Run and idle caps are per-child overridable
/// (`ChildInfo::run_timeout_secs`, `ChildInfo::idle_timeout_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Watchdog total-time cap per run (reference: 1 h).
    pub run: Duration,
    /// Watchdog idle cap: no child event for this long (reference: 15 min).
    pub idle: Duration,
    /// How long a new worker may take to register (spawn to ready).
    pub register: Duration,
    /// Bound on the TCP connect to a worker.
    pub connect: Duration,
    /// Bound on the TLS and WebSocket handshakes with a worker (the worker
    /// checks its token there). A fresh worker whose handshake times out is
    /// replaced once; a second timeout fails the child.
    pub handshake: Duration,
    /// How often the engine pings a connected worker (the worker pings back
    /// on its own period).
    pub keepalive_interval: Duration,
    /// A worker link with no frame at all (pong, ping or event) for this long
    /// is dead: its run ends as an error (a frozen or unreachable worker)
    /// instead of waiting for the idle watchdog. The first frame of a run is
    /// bounded by this too.
    pub keepalive_timeout: Duration,
    /// After `cancel`, how long the worker gets to send its terminal frame
    /// before it is killed.
    pub cancel_grace: Duration,
    /// Heartbeat period while a child runs (protocol: 5 s).
    pub heartbeat: Duration,
    /// A worker parked in the warm pool this long without a run is retired; a
    /// worker that has lost its engine's connection exits on its own after
    /// this long.
    pub worker_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            run: Duration::from_secs(3600),
            idle: Duration::from_secs(15 * 60),
            register: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(8),
            cancel_grace: Duration::from_secs(5),
            heartbeat: Duration::from_secs(5),
            worker_idle: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// A worker link's options: connect and handshake bounds and keepalive,
    /// the same for every placement.
    pub(crate) fn link_options(&self) -> ClientOptions {
        ClientOptions {
            connect_timeout: self.connect,
            handshake_timeout: self.handshake,
            keepalive: Some(Keepalive {
                interval: self.keepalive_interval,
                timeout: self.keepalive_timeout,
            }),
            ..ClientOptions::default()
        }
    }
}
