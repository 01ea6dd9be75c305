//! The parent's side of the transport (F8): connect to a worker, send frames,
//! read frames until the terminal frame or close.

use futures::stream::SplitStream;
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::writer::{write_frames, QUEUE_DEPTH};
use super::{ws_config, TransportError, DEFAULT_MAX_FRAME_BYTES};
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
    stream: SplitStream<WebSocketStream<TcpStream>>,
    endpoint: String,
}

impl FrameReceiver {
    /// The next frame; `None` once the worker closed the connection.
    pub async fn recv(&mut self) -> Option<Result<ChildFrame, TransportError>> {
        loop {
            match self.stream.next().await? {
                Ok(Message::Text(text)) => match serde_json::from_str::<ChildFrame>(&text) {
                    Ok(frame) => return Some(Ok(frame)),
                    Err(e) => tracing::debug!(error = %e, "skipping unknown or malformed frame"),
                },
                Ok(Message::Close(_)) => return None,
                Ok(_) => {}
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return None,
                Err(e) => {
                    return Some(Err(TransportError::WebSocket {
                        endpoint: self.endpoint.clone(),
                        source: Box::new(e),
                    }))
                }
            }
        }
    }
}

/// Connects to a worker's `ws://host:port` endpoint, with a bearer token when given.
pub async fn connect(endpoint: &str, token: Option<&Secret>) -> Result<Connection, TransportError> {
    connect_with_limit(endpoint, token, DEFAULT_MAX_FRAME_BYTES).await
}

/// [`connect`] with an explicit largest accepted frame.
pub async fn connect_with_limit(
    endpoint: &str,
    token: Option<&Secret>,
    max_frame_bytes: usize,
) -> Result<Connection, TransportError> {
    let authority = endpoint
        .strip_prefix("ws://")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| TransportError::BadEndpoint(endpoint.to_owned()))?;
    let mut request = endpoint
        .into_client_request()
        .map_err(|_| TransportError::BadEndpoint(endpoint.to_owned()))?;
    if let Some(t) = token {
        let value = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
            TransportError::BadEndpoint("bearer token is not a valid header value".into())
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|source| TransportError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config(max_frame_bytes)))
            .await
            .map_err(|e| match e {
                WsError::Http(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    TransportError::Unauthorized(endpoint.to_owned())
                }
                other => TransportError::WebSocket {
                    endpoint: endpoint.to_owned(),
                    source: Box::new(other),
                },
            })?;
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(write_frames(sink, rx));
    Ok(Connection {
        sender: FrameSender { tx },
        receiver: FrameReceiver {
            stream,
            endpoint: endpoint.to_owned(),
        },
    })
}
