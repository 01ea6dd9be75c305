//! The streamable HTTP transport (`--listen`, path `/mcp`): every request
//! must carry `Authorization: Bearer <token>` (compared in constant time;
//! anything else gets 401 before the MCP layer sees it). Same address rules
//! as `serve`: loopback, or TLS, or an explicit --insecure-no-tls. Each MCP
//! session is a connection with its own root session.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use bamboo_subagent::secret::constant_time_eq;
use bamboo_subagent::Secret;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::args::McpArgs;
use super::engine::Shared;
use super::server::FleetServer;

type Service = StreamableHttpService<FleetServer, LocalSessionManager>;
type Reply = Response<BoxBody<Bytes, Infallible>>;

/// Serves MCP over streamable HTTP until SIGTERM or Ctrl-C.
pub async fn serve(shared: Arc<Shared>, args: &McpArgs) -> anyhow::Result<()> {
    let Some(listen) = args.listen else {
        bail!("--listen ADDR:PORT is required for the HTTP transport");
    };
    let Some(token_file) = &args.token_file else {
        bail!("--listen needs --token-file FILE: a file (mode 600) holding the bearer token clients must present");
    };
    let token = bamboo_subagent::token_file::read_token_file(token_file)?;
    let tls = tls_acceptor(args)?;
    if tls.is_none() && !listen.ip().is_loopback() && !args.insecure_no_tls {
        bail!(
            "--listen {listen} is not a loopback address and no TLS is configured: the token would cross the network in clear text; give --tls-cert and --tls-key, or --insecure-no-tls if the network is trusted"
        );
    }
    let stop = CancellationToken::new();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token());
    if !listen.ip().is_loopback() {
        // Host checks guard unauthenticated loopback servers against DNS
        // rebinding; here every request needs the token, and the host
        // names a remote client uses are not known in advance.
        config = config.disable_allowed_hosts();
    }
    let service: Service = StreamableHttpService::new(
        move || Ok(FleetServer::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on --listen {listen}"))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The readiness line scripts and tests wait for (stdout is free here:
    // the protocol runs over HTTP).
    println!("listening {scheme}://{addr}/mcp");
    let _ = std::io::stdout().flush();
    tokio::spawn(stop_on_signal(stop.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept an MCP connection");
                    continue;
                }
            },
        };
        let service = service.clone();
        let token = token.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => connection(stream, service, token).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => connection(stream, service, token).await,
                    Err(e) => Err(format!("TLS handshake failed: {e}")),
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "MCP HTTP connection ended");
            }
        });
    }
    Ok(())
}

/// One HTTP/1.1 connection: each request is checked for the token first.
async fn connection<S>(stream: S, service: Service, token: Secret) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
        let service = service.clone();
        let authorized = bearer_matches(&req, &token);
        async move {
            if !authorized {
                return Ok::<Reply, Infallible>(unauthorized());
            }
            Ok(service.handle(req).await)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), handler)
        .await
        .map_err(|e| e.to_string())
}

fn bearer_matches(req: &Request<Incoming>, token: &Secret) -> bool {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.expose().as_bytes()))
}

fn unauthorized() -> Reply {
    let mut reply = Response::new(
        Full::new(Bytes::from_static(
            b"missing or wrong bearer token: send Authorization: Bearer <the token in the server's --token-file>\n",
        ))
        .boxed(),
    );
    *reply.status_mut() = StatusCode::UNAUTHORIZED;
    reply.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    // The request body is never read, so the connection cannot carry
    // another request: say so, or a client reusing it sees a disconnect.
    reply.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    reply
}

/// `--tls-cert` and `--tls-key` as a TLS acceptor, when given.
fn tls_acceptor(args: &McpArgs) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
    };
    let config = bamboo_subagent::resident::tls::server_config(
        &read(cert, "--tls-cert")?,
        &read(key, "--tls-key")?,
    )?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    stop.cancel();
}
