//! The resident worker (F11): a long-lived server that many engines reach over
//! the network, as opposed to the one-shot or pooled local worker.
//!
//! Every connection goes through a gate before the WebSocket upgrade: TLS
//! (when configured; a plain-HTTP client gets a 400 saying to use `wss://`),
//! then the request head: `GET /healthz` is answered 200 with no token and
//! no detail; any other request needs `Authorization: Bearer <token>`
//! (constant-time compare; a wrong one gets 401 before any frame, repeated
//! failures from one address wait longer each time); then a run slot: a
//! connection holds one of `max_runs` slots for its life, and one more gets
//! 503 "busy" at once instead of waiting. Admitted connections are served
//! exactly as a local worker serves its parent (supersede, cancel, steering,
//! approvals, nested spawn requests, terminal).
//!
//! Shutdown: stop accepting, let runs in flight finish within the grace
//! period (idle connections close at once, new runs are refused), then cancel
//! what is left and close.

mod head;
mod throttle;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::executor::Executor;
use crate::secret::{constant_time_eq, Secret};
use crate::transport::server::{serve, upgrade, Io, ServerConfig};
use crate::transport::{Keepalive, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES};
use head::{read_head, Head, Rewind};
use throttle::Throttle;

use crate::transport::server::TLS_HANDSHAKE_BYTE;

/// Connections still in the gate (TLS, request head, a throttled 401) at
/// once; more are closed at once, so a flood cannot exhaust file descriptors.
const MAX_IN_GATE: usize = 256;

/// Settings of a resident worker.
#[derive(Clone)]
pub struct ResidentConfig {
    /// The bearer token every upgrade must carry.
    pub token: Secret,
    /// TLS, when the listener serves `wss://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections (each serving one run at a time) admitted at once.
    pub max_runs: usize,
    /// TLS plus request head must arrive within this.
    pub handshake_timeout: Duration,
    /// Link keepalive of admitted connections.
    pub keepalive: Option<Keepalive>,
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
    /// After shutdown starts, how long runs in flight may take to finish
    /// before they are cancelled.
    pub grace: Duration,
}

impl std::fmt::Debug for ResidentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentConfig")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .field("max_runs", &self.max_runs)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("keepalive", &self.keepalive)
            .field("grace", &self.grace)
            .finish()
    }
}

impl ResidentConfig {
    /// Plain listener, default bounds, 4 runs, 30 s grace.
    pub fn new(token: Secret) -> Self {
        Self {
            token,
            tls: None,
            max_runs: 4,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            keepalive: Some(Keepalive::default()),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            grace: Duration::from_secs(30),
        }
    }
}

/// How a resident worker's shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection ended within the grace period.
    Clean,
    /// Some runs were still going at the end of the grace period and were
    /// cancelled.
    CancelledRuns,
}

/// Shared state of the gate.
struct Gate {
    config: ResidentConfig,
    server: ServerConfig,
    slots: Arc<Semaphore>,
    throttle: Throttle,
    acceptor: Option<TlsAcceptor>,
    executor: Arc<dyn Executor>,
}

/// Serves `listener` until `shutdown` is cancelled, then drains (see the
/// module docs).
pub async fn serve_resident(
    listener: TcpListener,
    executor: Arc<dyn Executor>,
    config: ResidentConfig,
    shutdown: CancellationToken,
) -> Drained {
    let server = ServerConfig {
        token: Some(config.token.clone()),
        max_frame_bytes: config.max_frame_bytes,
        handshake_timeout: config.handshake_timeout,
        keepalive: config.keepalive,
        ..ServerConfig::default()
    };
    let gate = Arc::new(Gate {
        slots: Arc::new(Semaphore::new(config.max_runs.max(1))),
        acceptor: config.tls.clone().map(TlsAcceptor::from),
        throttle: Throttle::default(),
        server,
        config,
        executor,
    });
    let mut conns: JoinSet<()> = JoinSet::new();
    let in_gate = Arc::new(Semaphore::new(MAX_IN_GATE));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(gating) = in_gate.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many connections in the gate; closing this one");
                        continue;
                    };
                    let gate = gate.clone();
                    conns.spawn(async move { gate.admit(stream, peer, gating).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    drain(&gate, conns).await
}

/// Lets connections end within the grace period, then stops them.
async fn drain(gate: &Gate, mut conns: JoinSet<()>) -> Drained {
    tracing::info!(
        connections = conns.len(),
        grace_secs = gate.config.grace.as_secs_f32(),
        "shutting down: no new connections; runs in flight may finish"
    );
    gate.server.drain.cancel();
    let finished = tokio::time::timeout(gate.config.grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if finished.is_ok() {
        return Drained::Clean;
    }
    tracing::warn!(
        connections = conns.len(),
        "grace period over: cancelling the runs still in flight"
    );
    gate.server.stop.cancel();
    // The server gives a cancelled run a few seconds to report; past that
    // the connection is dropped.
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        conns.abort_all();
    }
    Drained::CancelledRuns
}

/// What the gate decided for one request head.
enum Verdict {
    Health,
    Unauthorized,
    Busy,
    Admit(OwnedSemaphorePermit),
}

impl Gate {
    /// Takes one connection through the gate; `gating` is given back once
    /// it is admitted or answered.
    async fn admit(&self, tcp: TcpStream, peer: SocketAddr, gating: OwnedSemaphorePermit) {
        let _ = tcp.set_nodelay(true);
        let bound = self.config.handshake_timeout;
        let opened = tokio::time::timeout(bound, self.open(tcp)).await;
        let (mut io, head) = match opened {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection dropped before its request");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "connection dropped: no request within the handshake bound");
                return;
            }
        };
        let verdict = self.judge(&head, peer).await;
        drop(gating);
        match verdict {
            Verdict::Health => respond(&mut io, "200 OK", "ok").await,
            Verdict::Unauthorized => {
                tracing::info!(%peer, "refused an upgrade: missing or wrong bearer token");
                respond(&mut io, "401 Unauthorized", "missing or wrong bearer token").await;
            }
            Verdict::Busy => {
                let text = format!(
                    "this worker serves {} runs at a time and all are taken",
                    self.config.max_runs
                );
                tracing::info!(%peer, "refused a connection: busy");
                respond(&mut io, "503 Service Unavailable", &text).await;
            }
            Verdict::Admit(permit) => {
                let replay: Box<dyn Io> = Box::new(Rewind::new(head.raw, io));
                match upgrade(replay, &self.server).await {
                    Ok(ws) => {
                        tracing::debug!(%peer, "connection admitted");
                        serve(ws, self.executor.clone(), &self.server).await;
                    }
                    Err(e) => tracing::info!(%peer, error = %e, "upgrade failed"),
                }
                drop(permit);
            }
        }
    }

    /// TLS (when configured), then the request head.
    async fn open(&self, tcp: TcpStream) -> std::io::Result<(Box<dyn Io>, Head)> {
        let mut io: Box<dyn Io> = match &self.acceptor {
            None => {
                let mut tcp = tcp;
                if crate::transport::server::refuse_tls(&mut tcp).await {
                    return Err(std::io::Error::other("a TLS client on the plain port"));
                }
                Box::new(tcp)
            }
            Some(acceptor) => {
                let mut first = [0u8; 1];
                let n = tcp.peek(&mut first).await?;
                if n == 1 && first[0] != TLS_HANDSHAKE_BYTE {
                    let mut plain = tcp;
                    respond(
                        &mut plain,
                        "400 Bad Request",
                        "this worker only speaks TLS: connect with wss://",
                    )
                    .await;
                    return Err(std::io::Error::other("a plain-text client on the TLS port"));
                }
                Box::new(acceptor.accept(tcp).await?)
            }
        };
        let head = read_head(&mut io).await?;
        Ok((io, head))
    }

    async fn judge(&self, head: &Head, peer: SocketAddr) -> Verdict {
        if head.method == "GET" && head.path == "/healthz" {
            return Verdict::Health;
        }
        let given = head
            .authorization
            .as_deref()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), self.config.token.expose().as_bytes()) {
            let wait = self.throttle.failed(peer.ip());
            tokio::time::sleep(wait).await;
            return Verdict::Unauthorized;
        }
        self.throttle.succeeded(peer.ip());
        if self.server.drain.is_cancelled() {
            return Verdict::Busy;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Verdict::Admit(permit),
            Err(_) => Verdict::Busy,
        }
    }
}

/// Writes a minimal HTTP response with a one-line text body and closes.
async fn respond<S: tokio::io::AsyncWrite + Unpin>(io: &mut S, status: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(text.as_bytes()).await;
    let _ = io.shutdown().await;
}
