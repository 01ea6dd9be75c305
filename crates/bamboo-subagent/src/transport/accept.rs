//! The worker's listener loop: every incoming connection is upgraded on its
//! own task within the handshake bound, so a connection that sends nothing (a
//! port scanner, a local squatter) never delays the parent's connection; each
//! upgraded connection is then served on its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use super::server::{accept, serve, ServerConfig, Upgraded};
use super::TransportError;
use crate::executor::Executor;

/// Why [`serve_listener`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenEnd {
    /// `once` was set and the one upgraded connection has been served.
    Served,
    /// No upgraded connection was open for the whole `idle` span.
    Idle,
}

/// Accepts and serves connections on `listener` until, with `once`, the first
/// upgraded connection ends, or until no upgraded connection has been open
/// for `idle`. Connections that fail or time out in the handshake are dropped
/// and do not count as served; they neither hold the worker nor keep it alive.
pub async fn serve_listener(
    listener: &TcpListener,
    executor: Arc<dyn Executor>,
    config: &ServerConfig,
    once: bool,
    idle: Duration,
) -> ListenEnd {
    let config = Arc::new(config.clone());
    let mut handshakes: JoinSet<Result<Upgraded, TransportError>> = JoinSet::new();
    let mut sessions: JoinSet<()> = JoinSet::new();
    let mut idle_from = Instant::now();
    // A one-shot worker takes exactly one upgraded connection.
    let mut taken = false;
    loop {
        tokio::select! {
            _ = sleep_until(idle_from + idle), if sessions.is_empty() => return ListenEnd::Idle,
            accepted = listener.accept(), if !(once && taken) => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "connection accepted");
                    let config = config.clone();
                    handshakes.spawn(async move { accept(stream, &config).await });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => match done {
                Ok(Ok(ws)) if !(once && taken) => {
                    taken = true;
                    let (executor, config) = (executor.clone(), config.clone());
                    sessions.spawn(async move { serve(ws, executor, &config).await });
                }
                Ok(Ok(_)) => tracing::info!("a second connection to a one-shot worker was dropped"),
                Ok(Err(e)) => tracing::info!(error = %e, "connection not served"),
                Err(e) => tracing::warn!(error = %e, "a handshake task failed"),
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {
                if once {
                    return ListenEnd::Served;
                }
                idle_from = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::echo::EchoExecutor;
    use crate::frames::{ChildFrame, ParentFrame, RunRequest};
    use crate::secret::Secret;
    use crate::transport::client::{connect_with, ClientOptions};

    fn token_config() -> (ServerConfig, Secret) {
        let token = Secret::new("t".repeat(64));
        let config = ServerConfig {
            token: Some(token.clone()),
            handshake_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        (config, token)
    }

    async fn run_once(endpoint: &str, token: &Secret) -> ChildFrame {
        let mut conn = connect_with(endpoint, Some(token), &ClientOptions::default())
            .await
            .unwrap();
        conn.sender
            .send(ParentFrame::Run(RunRequest::new("hi")))
            .await
            .unwrap();
        loop {
            match conn.receiver.recv().await {
                Some(Ok(ChildFrame::Terminal(t))) => return ChildFrame::Terminal(t),
                Some(Ok(_)) => {}
                other => panic!("expected a terminal frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_silent_connection_does_not_delay_the_parent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("ws://{}", listener.local_addr().unwrap());
        let (config, token) = token_config();
        let server = tokio::spawn(async move {
            serve_listener(
                &listener,
                Arc::new(EchoExecutor),
                &config,
                true,
                Duration::from_secs(60),
            )
            .await
        });
        // The squatter connects first and sends nothing.
        let _squatter = tokio::net::TcpStream::connect(endpoint.trim_start_matches("ws://"))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let frame = tokio::time::timeout(Duration::from_secs(30), run_once(&endpoint, &token))
            .await
            .unwrap();
        assert!(matches!(frame, ChildFrame::Terminal(_)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the run waited {:?} behind the squatter",
            started.elapsed()
        );
        assert_eq!(server.await.unwrap(), ListenEnd::Served);
    }

    #[tokio::test]
    async fn a_connection_that_never_upgrades_is_dropped_after_the_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut config, _) = token_config();
        config.handshake_timeout = Duration::from_millis(300);
        tokio::spawn(async move {
            serve_listener(
                &listener,
                Arc::new(EchoExecutor),
                &config,
                false,
                Duration::from_secs(60),
            )
            .await
        });
        let mut squatter = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(&mut squatter, &mut buf),
        )
        .await
        .unwrap();
        // EOF or a reset: either way the worker hung up on it.
        assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_with_no_connection_ends_idle_after_the_span() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let started = Instant::now();
        let end = serve_listener(
            &listener,
            Arc::new(EchoExecutor),
            &ServerConfig::default(),
            false,
            Duration::from_secs(300),
        )
        .await;
        assert_eq!(end, ListenEnd::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(300));
    }
}
