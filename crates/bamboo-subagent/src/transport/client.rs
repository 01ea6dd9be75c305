//! The parent's side of the transport (F8): connect to a worker (`ws://`, or
//! `wss://` over TLS with the bearer token), send frames, read frames until
//! the terminal frame or close.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::SplitStream;
use futures::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::keepalive::Silence;
use super::writer::{write_frames, QUEUE_DEPTH};
use super::{
    ws_config, Keepalive, TransportError, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES,
};
use crate::frames::{ChildFrame, ParentFrame};
use crate::secret::Secret;

/// A live connection to a worker, split so frames can be sent (cancel,
/// steering, approval replies) while events are being read.
#[derive(Debug)]
pub struct Connection {
    /// Sends parent frames; cheap to clone.
    pub sender: FrameSender,
    /// Reads child frames.
    pub receiver: FrameReceiver,
}

/// Sends parent frames through the connection's writer task.
#[derive(Debug, Clone)]
pub struct FrameSender {
    tx: mpsc::Sender<String>,
}

impl FrameSender {
    /// Queues one frame; fails once the connection is closed.
    pub async fn send(&self, frame: ParentFrame) -> Result<(), TransportError> {
        self.tx
            .send(frame.to_text())
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Queues raw text as a frame (tests use it to send malformed frames).
    pub async fn send_raw(&self, text: impl Into<String>) -> Result<(), TransportError> {
        self.tx
            .send(text.into())
            .await
            .map_err(|_| TransportError::Closed)
    }
}

/// Reads child frames, skipping frames this build does not understand.
#[derive(Debug)]
pub struct FrameReceiver {
    stream: SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    endpoint: String,
    silence: Silence,
    /// Set once the link is known dead; later reads report it closed.
    ended: bool,
    /// How the link ended, found by [`FrameReceiver::try_recv`] and reported
    /// by the next [`FrameReceiver::recv`].
    held: Option<Option<Result<ChildFrame, TransportError>>>,
}

/// What one WebSocket message means to the reader.
enum Step {
    Frame(ChildFrame),
    /// Not a frame for the caller (ping, pong, binary, unknown frame).
    Skip,
    /// The link ended: closed (`None`) or failed.
    End(Option<Result<ChildFrame, TransportError>>),
}

impl FrameReceiver {
    /// The next frame; `None` once the worker closed the connection or it was
    /// reset (the worker exited or was killed); an error when the link failed
    /// otherwise, including [`TransportError::Silent`] when no frame at all
    /// (not even a pong) arrived for the keepalive limit.
    pub async fn recv(&mut self) -> Option<Result<ChildFrame, TransportError>> {
        if self.ended {
            return None;
        }
        let out = match self.held.take() {
            Some(end) => end,
            None => self.next_frame().await,
        };
        if !matches!(out, Some(Ok(_))) {
            self.ended = true;
        }
        out
    }

    async fn next_frame(&mut self) -> Option<Result<ChildFrame, TransportError>> {
        loop {
            let msg = match self.silence.next(&mut self.stream).await {
                Ok(msg) => msg,
                Err(waited) => {
                    return Some(Err(TransportError::Silent {
                        endpoint: self.endpoint.clone(),
                        waited,
                    }))
                }
            };
            match self.step(msg) {
                Step::Frame(frame) => return Some(Ok(frame)),
                Step::Skip => {}
                Step::End(end) => return end,
            }
        }
    }

    /// The next frame if one has already arrived, without waiting: a
    /// consumer drains a burst (one socket read holds many frames) in one go
    /// instead of one wake-up per frame. `None` when nothing is ready, or
    /// when the link ended: [`FrameReceiver::recv`] then says how.
    pub fn try_recv(&mut self) -> Option<ChildFrame> {
        if self.ended || self.held.is_some() {
            return None;
        }
        loop {
            // Not ready: the next `recv` registers the task's waker.
            let msg = self.stream.next().now_or_never()?;
            match self.step(msg) {
                Step::Frame(frame) => return Some(frame),
                Step::Skip => {}
                Step::End(end) => {
                    self.held = Some(end);
                    return None;
                }
            }
        }
    }

    /// What the stream's next item (`None`: it ended) means.
    fn step(&self, msg: Option<Result<Message, WsError>>) -> Step {
        let Some(msg) = msg else {
            return Step::End(None);
        };
        match msg {
            Ok(Message::Text(text)) => match ChildFrame::from_text(&text) {
                Ok(frame) => Step::Frame(frame),
                Err(e) => {
                    tracing::debug!(error = %e, "skipping unknown or malformed frame");
                    Step::Skip
                }
            },
            Ok(Message::Close(_)) => Step::End(None),
            Ok(_) => Step::Skip,
            Err(e) if is_closed_error(&e) => Step::End(None),
            Err(e) => Step::End(Some(Err(TransportError::WebSocket {
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            }))),
        }
    }

    /// Whether the worker has closed the connection (or it broke), checked
    /// without waiting. For a connection between runs, where no frame is
    /// due: anything that arrived meanwhile is stale and is dropped, and the
    /// silence clock starts afresh for the next run.
    pub fn is_closed(&mut self) -> bool {
        self.silence.reset();
        if self.held.take().is_some() {
            self.ended = true;
        }
        loop {
            match self.stream.next().now_or_never() {
                None => return self.ended,
                Some(None | Some(Ok(Message::Close(_)) | Err(_))) => {
                    self.ended = true;
                    return true;
                }
                Some(Some(Ok(_))) => {}
            }
        }
    }
}

/// Errors that mean the peer went away (closed, reset, or the socket hit
/// EOF) rather than that the link misbehaved: a killed worker looks like this.
fn is_closed_error(e: &WsError) -> bool {
    use std::io::ErrorKind;
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => true,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => true,
        WsError::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Connection settings beyond the endpoint and token.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
    /// Extra trusted root certificates (DER) for `wss://`, e.g. a resident
    /// worker's self-signed certificate. The public web roots are always trusted.
    pub extra_root_certs: Vec<Vec<u8>>,
    /// Bound on the TCP connect.
    pub connect_timeout: Duration,
    /// Bound on the TLS and WebSocket handshakes together (the worker checks
    /// the token during the WebSocket handshake).
    pub handshake_timeout: Duration,
    /// Ping period and silence limit of the link; `None` turns keepalive off
    /// (a frozen worker is then noticed only by the engine's idle watchdog).
    pub keepalive: Option<Keepalive>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            extra_root_certs: Vec::new(),
            connect_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            keepalive: Some(Keepalive::default()),
        }
    }
}

/// Connects to a worker's `ws://host:port` (or `wss://host:port`) endpoint,
/// with a bearer token when given.
pub async fn connect(endpoint: &str, token: Option<&Secret>) -> Result<Connection, TransportError> {
    connect_with(endpoint, token, &ClientOptions::default()).await
}

/// [`connect`] with explicit [`ClientOptions`].
pub async fn connect_with(
    endpoint: &str,
    token: Option<&Secret>,
    options: &ClientOptions,
) -> Result<Connection, TransportError> {
    let (tls, authority) = split_endpoint(endpoint)?;
    let mut request = endpoint
        .into_client_request()
        .map_err(|_| TransportError::BadEndpoint(endpoint.to_owned()))?;
    if let Some(t) = token {
        let value = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
            TransportError::BadEndpoint("bearer token is not a valid header value".into())
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let timeout = |step, waited| TransportError::Timeout {
        step,
        endpoint: endpoint.to_owned(),
        waited,
    };
    let tcp = tokio::time::timeout(options.connect_timeout, TcpStream::connect(&authority))
        .await
        .map_err(|_| timeout("TCP connect", options.connect_timeout))?
        .map_err(|source| TransportError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let connector = if tls {
        Some(Connector::Rustls(Arc::new(tls_config(
            &options.extra_root_certs,
        )?)))
    } else {
        None
    };
    let config = Some(ws_config(options.max_frame_bytes));
    let handshake =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, config, connector);
    let (ws, _) = tokio::time::timeout(options.handshake_timeout, handshake)
        .await
        .map_err(|_| timeout("WebSocket handshake", options.handshake_timeout))?
        .map_err(|e| handshake_error(endpoint, e))?;
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let keepalive = options.keepalive;
    tokio::spawn(write_frames(sink, rx, keepalive.map(|k| k.interval)));
    Ok(Connection {
        sender: FrameSender { tx },
        receiver: FrameReceiver {
            stream,
            endpoint: endpoint.to_owned(),
            silence: Silence::new(keepalive.map(|k| k.timeout)),
            ended: false,
            held: None,
        },
    })
}

/// Names what went wrong in the handshake: refused token, busy worker, any
/// other HTTP refusal (with the worker's one-line reason), or TLS.
fn handshake_error(endpoint: &str, e: WsError) -> TransportError {
    let endpoint = endpoint.to_owned();
    match e {
        WsError::Http(resp) => {
            let detail = resp
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim()
                        .chars()
                        .take(200)
                        .collect()
                })
                .unwrap_or_default();
            match resp.status() {
                StatusCode::UNAUTHORIZED => TransportError::Unauthorized(endpoint),
                StatusCode::SERVICE_UNAVAILABLE => TransportError::Busy { endpoint, detail },
                status => TransportError::Refused {
                    endpoint,
                    status: status.as_u16(),
                    detail,
                },
            }
        }
        WsError::Tls(tls) => TransportError::TlsHandshake {
            endpoint,
            detail: tls.to_string(),
        },
        WsError::Io(io)
            if io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(is_plain_text_answer) =>
        {
            TransportError::NotTls { endpoint }
        }
        WsError::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            TransportError::TlsHandshake {
                endpoint,
                detail: io.to_string(),
            }
        }
        other => TransportError::WebSocket {
            endpoint,
            source: Box::new(other),
        },
    }
}

/// Whether rustls failed because the first bytes back were not a TLS record
/// (a plain listener's `HTTP/1.1 400 ...`): a `ContentType` byte TLS does
/// not know.
fn is_plain_text_answer(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}

/// `(is_tls, host:port)` of a `ws://` or `wss://` endpoint; the port defaults
/// to 80 or 443.
fn split_endpoint(endpoint: &str) -> Result<(bool, String), TransportError> {
    let bad = || TransportError::BadEndpoint(endpoint.to_owned());
    let (tls, rest) = match endpoint.split_once("://") {
        Some(("ws", rest)) => (false, rest),
        Some(("wss", rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let authority = rest
        .split('/')
        .next()
        .filter(|a| !a.is_empty())
        .ok_or_else(bad)?;
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    Ok((tls, authority))
}

/// A rustls client config (ring provider) trusting the public web roots plus `extra`.
fn tls_config(extra: &[Vec<u8>]) -> Result<rustls::ClientConfig, TransportError> {
    let tls_err = |e: rustls::Error| TransportError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(tls_err)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_default_ports() {
        assert_eq!(
            split_endpoint("ws://127.0.0.1:9").unwrap(),
            (false, "127.0.0.1:9".into())
        );
        assert_eq!(
            split_endpoint("wss://host.example").unwrap(),
            (true, "host.example:443".into())
        );
        assert_eq!(
            split_endpoint("ws://[::1]:7/path").unwrap(),
            (false, "[::1]:7".into())
        );
        assert!(split_endpoint("http://x:1").is_err());
        assert!(split_endpoint("ws://").is_err());
    }

    #[tokio::test]
    async fn a_connection_the_worker_closed_is_seen_closed_without_waiting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("ws://{}", listener.local_addr().unwrap());
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            close_rx.await.unwrap();
            ws.close(None).await.unwrap();
        });
        let mut conn = connect(&endpoint, None).await.unwrap();
        assert!(!conn.receiver.is_closed(), "an open idle connection");
        close_tx.send(()).unwrap();
        server.await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !conn.receiver.is_closed() {
            assert!(std::time::Instant::now() < deadline, "close never seen");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A server that upgrades one connection and hands it to `then`.
    async fn one_connection<F, Fut>(then: F) -> String
    where
        F: FnOnce(WebSocketStream<TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            then(tokio_tungstenite::accept_async(tcp).await.unwrap()).await;
        });
        endpoint
    }

    #[tokio::test]
    async fn a_burst_drained_without_waiting_keeps_every_frame_and_the_close() {
        use futures::SinkExt;
        let endpoint = one_connection(|mut ws| async move {
            for i in 0..2000 {
                let frame = ChildFrame::Event {
                    event: bamboo_domain::AgentEvent::token(format!("t{i}")),
                };
                ws.feed(Message::text(frame.to_text())).await.unwrap();
            }
            ws.flush().await.unwrap();
            ws.close(None).await.unwrap();
        })
        .await;
        let mut conn = connect(&endpoint, None).await.unwrap();
        let mut got = Vec::new();
        while let Some(frame) = conn.receiver.recv().await {
            got.push(frame.unwrap());
            while let Some(more) = conn.receiver.try_recv() {
                got.push(more);
            }
        }
        let want: Vec<_> = (0..2000)
            .map(|i| ChildFrame::Event {
                event: bamboo_domain::AgentEvent::token(format!("t{i}")),
            })
            .collect();
        assert_eq!(got, want, "every frame once, in order");
        assert!(conn.receiver.try_recv().is_none());
        assert!(
            conn.receiver.recv().await.is_none(),
            "the close is reported once drained"
        );
    }

    #[tokio::test]
    async fn a_reset_connection_reads_as_closed_like_a_killed_worker() {
        let endpoint = one_connection(|ws| async move {
            // Zero linger: dropping the socket sends RST, as a killed process does.
            ws.get_ref().set_zero_linger().unwrap();
            drop(ws);
        })
        .await;
        let mut conn = connect(&endpoint, None).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), conn.receiver.recv())
            .await
            .unwrap();
        assert!(got.is_none(), "expected closed, got {got:?}");
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_is_reported_silent_after_the_limit() {
        let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
        // The server never reads, so it never pongs, and never pings.
        let endpoint = one_connection(|ws| async move {
            let _ = hold_rx.await;
            drop(ws);
        })
        .await;
        let options = ClientOptions {
            keepalive: Some(Keepalive {
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(400),
            }),
            ..ClientOptions::default()
        };
        let mut conn = connect_with(&endpoint, None, &options).await.unwrap();
        let started = std::time::Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(30), conn.receiver.recv())
            .await
            .unwrap();
        match got {
            Some(Err(e @ TransportError::Silent { .. })) => {
                let text = e.to_string();
                assert!(text.contains("silent for 0.4s"), "{text}");
                assert!(text.contains("frozen or unreachable"), "{text}");
            }
            other => panic!("expected a silent-link error, got {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert!(
            conn.receiver.recv().await.is_none(),
            "a dead link stays closed"
        );
        drop(hold_tx);
    }

    #[tokio::test]
    async fn a_peer_that_answers_pings_stays_alive_while_sending_nothing() {
        let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
        // The server only reads: tungstenite answers each ping with a pong.
        let endpoint = one_connection(|mut ws| async move {
            tokio::select! {
                _ = hold_rx => {}
                _ = async { while ws.next().await.is_some() {} } => {}
            }
        })
        .await;
        let options = ClientOptions {
            keepalive: Some(Keepalive {
                interval: Duration::from_millis(50),
                timeout: Duration::from_millis(400),
            }),
            ..ClientOptions::default()
        };
        let mut conn = connect_with(&endpoint, None, &options).await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(1500), conn.receiver.recv()).await;
        assert!(quiet.is_err(), "the link was declared dead: {quiet:?}");
        drop(hold_tx);
    }

    #[tokio::test]
    async fn a_handshake_that_never_completes_times_out_naming_the_bound_and_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("ws://{}", listener.local_addr().unwrap());
        // Accepted by the kernel, never answered.
        let options = ClientOptions {
            handshake_timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        };
        let err = connect_with(&endpoint, None, &options).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TransportError::Timeout { .. }), "{text}");
        assert!(text.contains("WebSocket handshake"), "{text}");
        assert!(text.contains(&endpoint), "{text}");
        assert!(text.contains("0.3s"), "{text}");
        drop(listener);
    }
}
