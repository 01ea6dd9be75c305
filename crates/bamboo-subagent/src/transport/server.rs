//! The worker's side of the transport (F7, protocol.md 4.1-4.4).
//!
//! A connection is upgraded by [`accept`] (the bearer token is checked during
//! the handshake, which is bounded) and then served by [`serve`], which routes
//! frames. `run` starts a run (after
//! cancelling and awaiting any active one, so outputs never interleave),
//! `cancel` trips the active run's token at once, `message` feeds its steering
//! inbox, replies resolve pending host calls. A malformed or unknown frame is
//! skipped; closing the connection cancels the active run, and so does a
//! parent link silent past the keepalive limit.

use crate::executor::frame_host::{FrameHost, Replies};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::keepalive::Silence;
use super::writer::{write_frames, QUEUE_DEPTH};
use super::{
    ws_config, Keepalive, TransportError, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES,
};
use crate::executor::{EventSink, Executor, HostBridge, RunContext, RunOutcome, SteeringInbox};
use crate::frames::{ChildFrame, ParentFrame, RunRequest, Terminal};
use crate::idle::Activity;
use crate::secret::{constant_time_eq, Secret};

/// How long a cancelled executor may take to wind down before its future is
/// dropped and the run is reported cancelled anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long a closing connection may take to flush its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How often a draining connection checks whether its run has ended.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Server-side settings for one connection.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token required on the upgrade, when set.
    pub token: Option<Secret>,
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
    /// Counts runs in flight as work, when someone watches for quiet spells.
    pub activity: Option<Activity>,
    /// A connection must finish the WebSocket handshake (and pass the token
    /// check) within this bound, or it is dropped.
    pub handshake_timeout: Duration,
    /// Ping period and silence limit; a parent link silent past the limit is
    /// closed, which cancels its run. `None` turns keepalive off.
    pub keepalive: Option<Keepalive>,
    /// Once cancelled, connections take no new run (a `run` frame is answered
    /// with an error terminal) and close as soon as their active run ends.
    pub drain: CancellationToken,
    /// Once cancelled, connections cancel their active run and close.
    pub stop: CancellationToken,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            activity: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            keepalive: Some(Keepalive::default()),
            drain: CancellationToken::new(),
            stop: CancellationToken::new(),
        }
    }
}

/// A byte stream a connection can be served over: plain TCP, or TLS on TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection that passed the WebSocket handshake and the token check,
/// over plain TCP unless said otherwise (a resident worker's connections are
/// boxed: TLS or not).
pub struct Upgraded<S = TcpStream>(WebSocketStream<S>);

impl<S> std::fmt::Debug for Upgraded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upgraded")
    }
}

/// Serves one parent connection until it closes: [`accept`], then [`serve`].
/// Returns an error only when the upgrade failed (including a refused token
/// or a handshake past its bound), so callers can tell a connection that was
/// served from one that was not.
pub async fn serve_connection(
    stream: TcpStream,
    executor: Arc<dyn Executor>,
    config: &ServerConfig,
) -> Result<(), TransportError> {
    let ws = accept(stream, config).await?;
    serve(ws, executor, config).await;
    Ok(())
}

/// Upgrades one incoming connection, checking the bearer token, within
/// `config.handshake_timeout`: a client that sends nothing cannot hold the
/// worker.
pub async fn accept(
    mut stream: TcpStream,
    config: &ServerConfig,
) -> Result<Upgraded, TransportError> {
    let _ = stream.set_nodelay(true);
    if tokio::time::timeout(config.handshake_timeout, refuse_tls(&mut stream))
        .await
        .unwrap_or(false)
    {
        return Err(TransportError::WebSocket {
            endpoint: "incoming connection".to_owned(),
            source: Box::new(tokio_tungstenite::tungstenite::Error::Io(
                std::io::Error::other("a TLS client on a plain listener (wss:// to ws://)"),
            )),
        });
    }
    upgrade(stream, config).await
}

/// The first byte of a TLS connection: a handshake record.
pub(crate) const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// When the client opens with a TLS hello (a `wss://` URL given for this
/// plain listener), answers in plain text and returns true: the client
/// then fails at once with "does not speak TLS", where waiting for an HTTP
/// request that never comes would hold it for the whole handshake bound.
pub(crate) async fn refuse_tls(stream: &mut TcpStream) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 1];
    if !matches!(stream.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE_BYTE) {
        return false;
    }
    let body = "this endpoint does not speak TLS: connect with ws://";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    true
}

/// Upgrades an already accepted stream (plain or TLS) like [`accept`].
pub async fn upgrade<S: Io>(
    stream: S,
    config: &ServerConfig,
) -> Result<Upgraded<S>, TransportError> {
    let token = config.token.clone();
    // The callback's error type is fixed by tungstenite's handshake API.
    #[allow(clippy::result_large_err)]
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match &token {
            Some(t) if !bearer_matches(req, t) => Err(unauthorized()),
            _ => Ok(resp),
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check,
        Some(ws_config(config.max_frame_bytes)),
    );
    let endpoint = || "incoming connection".to_owned();
    let ws = tokio::time::timeout(config.handshake_timeout, upgrade)
        .await
        .map_err(|_| TransportError::Timeout {
            step: "WebSocket handshake",
            endpoint: endpoint(),
            waited: config.handshake_timeout,
        })?
        .map_err(|e| TransportError::WebSocket {
            endpoint: endpoint(),
            source: Box::new(e),
        })?;
    Ok(Upgraded(ws))
}

/// Serves an upgraded connection until the parent closes it, it breaks, or
/// it stays silent past the keepalive limit; then cancels the active run.
pub async fn serve<S: Io>(ws: Upgraded<S>, executor: Arc<dyn Executor>, config: &ServerConfig) {
    let (sink, mut stream) = ws.0.split();
    let (out_tx, out_rx) = mpsc::channel::<String>(QUEUE_DEPTH);
    let pings = config.keepalive.map(|k| k.interval);
    let mut writer = tokio::spawn(write_frames(sink, out_rx, pings));
    let mut conn = Connection {
        executor,
        out: out_tx,
        replies: Arc::new(Replies::default()),
        active: None,
        activity: config.activity.clone(),
        draining: false,
    };
    let mut silence = Silence::new(config.keepalive.map(|k| k.timeout));
    let mut drain_check = tokio::time::interval(DRAIN_POLL);
    drain_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Pinned once: re-creating it per frame would take the token's lock each time.
    let stop = config.stop.cancelled();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stop => {
                tracing::info!("worker stopping: cancelling the connection's run");
                break;
            }
            _ = drain_check.tick(), if config.drain.is_cancelled() => {
                conn.draining = true;
                if conn.is_idle() {
                    break;
                }
                continue;
            }
            next = silence.next(&mut stream) => next,
        };
        let msg = match next {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(waited) => {
                tracing::warn!(
                    "parent link silent for {}s; closing it and cancelling its run",
                    waited.as_secs_f32()
                );
                break;
            }
        };
        match msg {
            Ok(Message::Text(text)) => match serde_json::from_str::<ParentFrame>(&text) {
                Ok(frame) => conn.handle(frame).await,
                Err(e) => tracing::debug!(error = %e, "ignoring malformed or unknown frame"),
            },
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "connection ended");
                break;
            }
        }
    }
    // Bounded: a frozen parent may never take the terminal or close frame.
    let stopping = tokio::time::timeout(CANCEL_GRACE + CLOSE_GRACE, conn.stop_active());
    if stopping.await.is_err() {
        tracing::debug!("the cancelled run could not queue its terminal frame");
    }
    drop(conn);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

fn bearer_matches(req: &Request, token: &Secret) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.expose().as_bytes()))
}

fn unauthorized() -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some("missing or wrong bearer token".into()));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp
}

struct ActiveRun {
    cancel: CancellationToken,
    steer: mpsc::UnboundedSender<String>,
    task: JoinHandle<()>,
}

struct Connection {
    executor: Arc<dyn Executor>,
    out: mpsc::Sender<String>,
    replies: Arc<Replies>,
    active: Option<ActiveRun>,
    activity: Option<Activity>,
    /// The worker is shutting down: no new run starts on this connection.
    draining: bool,
}

impl Connection {
    /// No run is in flight (none started, or its terminal frame is queued).
    fn is_idle(&self) -> bool {
        self.active.as_ref().is_none_or(|a| a.task.is_finished())
    }

    async fn handle(&mut self, frame: ParentFrame) {
        match frame {
            ParentFrame::Run(_) if self.draining => {
                let refused = ChildFrame::Terminal(Terminal {
                    status: bamboo_domain::TerminalStatus::Error,
                    result: None,
                    error: Some(
                        "the worker is shutting down and takes no new run; run it on another worker"
                            .into(),
                    ),
                    transcript: None,
                    usage: None,
                    agent_session_id: None,
                });
                let _ = self.out.send(refused.to_text()).await;
            }
            ParentFrame::Run(request) => {
                self.stop_active().await;
                self.start(request);
            }
            ParentFrame::Cancel => {
                if let Some(a) = &self.active {
                    a.cancel.cancel();
                }
            }
            ParentFrame::Message { text } => {
                // With no active run the message is dropped (protocol.md 4.1).
                if let Some(a) = self.active.as_ref().filter(|a| !a.task.is_finished()) {
                    let _ = a.steer.send(text);
                }
            }
            reply @ (ParentFrame::ApprovalReply { .. } | ParentFrame::SubagentReply { .. }) => {
                self.replies.answer(reply);
            }
        }
    }

    /// Cancels the active run and waits until its terminal frame is queued.
    async fn stop_active(&mut self) {
        if let Some(a) = self.active.take() {
            a.cancel.cancel();
            let _ = a.task.await;
        }
    }

    fn start(&mut self, request: RunRequest) {
        let cancel = CancellationToken::new();
        let (steer, steering) = SteeringInbox::channel();
        let host: Arc<dyn HostBridge> =
            Arc::new(FrameHost::new(self.out.clone(), self.replies.clone()));
        let ctx = RunContext {
            events: EventSink::frames(self.out.clone(), Some(host)),
            steering,
            cancel: cancel.clone(),
        };
        let executor = self.executor.clone();
        let out = self.out.clone();
        let run_cancel = cancel.clone();
        // Counts from the run frame until the terminal frame is queued.
        let in_flight = self.activity.as_ref().map(Activity::begin);
        let task = tokio::spawn(async move {
            let outcome = run_to_end(executor, request, ctx, run_cancel).await;
            let _ = out.send(terminal_text(outcome)).await;
            drop(in_flight);
        });
        self.active = Some(ActiveRun {
            cancel,
            steer,
            task,
        });
    }
}

/// Runs the executor; once cancelled it gets [`CANCEL_GRACE`] to finish
/// (it may be blocked on a full event queue) before it is dropped.
async fn run_to_end(
    executor: Arc<dyn Executor>,
    request: RunRequest,
    ctx: RunContext,
    cancel: CancellationToken,
) -> RunOutcome {
    // A panicking executor still ends its run with a terminal frame, so the
    // parent is never left waiting.
    let run = std::panic::AssertUnwindSafe(executor.run(request, ctx))
        .catch_unwind()
        .map(|r| {
            r.unwrap_or_else(|_| {
                RunOutcome::error("the executor panicked; see the worker's stderr")
            })
        });
    tokio::pin!(run);
    tokio::select! {
        outcome = &mut run => outcome,
        _ = cancel.cancelled() => tokio::time::timeout(CANCEL_GRACE, &mut run)
            .await
            .unwrap_or_else(|_| RunOutcome::cancelled()),
    }
}

/// Largest terminal frame sent with its transcript: well under the peer's
/// frame cap ([`super::DEFAULT_MAX_FRAME_BYTES`]), so a long transcript never
/// turns a completed run into a failed read on the parent (E15).
const MAX_TERMINAL_BYTES: usize = 12 << 20;

/// The terminal frame of `outcome`; without its transcript when that would
/// make the frame too large (the result and status always go through).
fn terminal_text(outcome: crate::executor::RunOutcome) -> String {
    let mut terminal = Terminal::from(outcome);
    let text = ChildFrame::Terminal(terminal.clone()).to_text();
    if text.len() <= MAX_TERMINAL_BYTES || terminal.transcript.is_none() {
        return text;
    }
    tracing::warn!(
        bytes = text.len(),
        "terminal transcript too large to send; sending the result alone"
    );
    terminal.transcript = None;
    ChildFrame::Terminal(terminal).to_text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::RunOutcome;
    use crate::transport::client::connect;
    use async_trait::async_trait;
    use bamboo_domain::TerminalStatus;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    struct Panics;

    #[async_trait]
    impl Executor for Panics {
        async fn run(&self, _: RunRequest, _: RunContext) -> RunOutcome {
            panic!("boom");
        }
    }

    #[tokio::test]
    async fn a_panicking_executor_still_sends_an_error_terminal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = serve_connection(stream, Arc::new(Panics), &ServerConfig::default()).await;
        });
        let mut conn = connect(&endpoint, None).await.unwrap();
        conn.sender
            .send(ParentFrame::Run(RunRequest::new("x")))
            .await
            .unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(30), conn.receiver.recv())
            .await
            .unwrap();
        match frame {
            Some(Ok(ChildFrame::Terminal(t))) => {
                assert_eq!(t.status, TerminalStatus::Error);
                assert!(t.error.unwrap().contains("panicked"));
            }
            other => panic!("expected an error terminal, got {other:?}"),
        }
    }

    /// Runs until cancelled, then reports when that happened.
    struct WaitsForCancel(Mutex<Option<oneshot::Sender<()>>>);

    #[async_trait]
    impl Executor for WaitsForCancel {
        async fn run(&self, _: RunRequest, ctx: RunContext) -> RunOutcome {
            ctx.cancel.cancelled().await;
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(());
            }
            RunOutcome::cancelled()
        }
    }

    #[tokio::test]
    async fn a_silent_parent_link_is_closed_and_its_run_cancelled() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("ws://{}", listener.local_addr().unwrap());
        let (cancelled_tx, cancelled_rx) = oneshot::channel();
        let executor = Arc::new(WaitsForCancel(Mutex::new(Some(cancelled_tx))));
        let config = ServerConfig {
            keepalive: Some(Keepalive {
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(400),
            }),
            ..ServerConfig::default()
        };
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve_connection(stream, executor, &config).await.unwrap();
        });
        // A frozen parent: it neither pings nor reads (so it never pongs).
        let options = crate::transport::client::ClientOptions {
            keepalive: None,
            ..Default::default()
        };
        let conn = crate::transport::client::connect_with(&endpoint, None, &options)
            .await
            .unwrap();
        conn.sender
            .send(ParentFrame::Run(RunRequest::new("x")))
            .await
            .unwrap();
        let sent = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), cancelled_rx)
            .await
            .unwrap()
            .unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(400));
    }

    #[test]
    fn e15_an_oversized_transcript_is_dropped_but_the_result_goes_through() {
        let mut outcome = crate::executor::RunOutcome::completed("done");
        let big = "x".repeat(MAX_TERMINAL_BYTES);
        outcome.transcript = Some(vec![bamboo_domain::Message::assistant(big)]);
        let text = terminal_text(outcome);
        assert!(text.len() < MAX_TERMINAL_BYTES);
        assert!(text.contains(r#""result":"done""#) && !text.contains("transcript"));
        let small = terminal_text(crate::executor::RunOutcome::completed("ok"));
        assert!(small.contains(r#""status":"completed""#));
    }
}
