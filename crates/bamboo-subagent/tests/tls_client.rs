//! F8: the client reaches a `wss://` endpoint over TLS, sending the bearer
//! token, and refuses a server whose certificate it does not trust.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used)]
// The handshake callback's error type is fixed by tungstenite.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use bamboo_subagent::frames::{ChildFrame, ParentFrame, RunRequest, Terminal};
use bamboo_subagent::transport::client::{connect, connect_with, ClientOptions};
use bamboo_subagent::Secret;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A one-connection wss server on loopback answering a run with a terminal
/// frame that echoes the Authorization header it saw.
async fn tls_server() -> (String, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone().into()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let seen = Arc::new(std::sync::Mutex::new(String::new()));
            let record = seen.clone();
            let check = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                              resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                *record.lock().unwrap() = auth.to_owned();
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tls, check)
                .await
                .unwrap();
            while let Some(Ok(Message::Text(text))) = ws.next().await {
                if let Ok(ParentFrame::Run(_)) = serde_json::from_str::<ParentFrame>(&text) {
                    let auth = seen.lock().unwrap().clone();
                    let t = ChildFrame::Terminal(Terminal {
                        status: bamboo_domain::TerminalStatus::Completed,
                        result: Some(auth),
                        error: None,
                        transcript: None,
                        usage: None,
                        agent_session_id: None,
                    });
                    ws.send(Message::text(t.to_text())).await.unwrap();
                }
            }
        }
    });
    (format!("wss://localhost:{port}"), der)
}

#[tokio::test]
async fn wss_with_a_trusted_certificate_carries_the_bearer_token() {
    let (endpoint, der) = tls_server().await;
    let options = ClientOptions {
        extra_root_certs: vec![der],
        ..ClientOptions::default()
    };
    let token = Secret::new("resident-token");
    let mut conn = connect_with(&endpoint, Some(&token), &options)
        .await
        .unwrap();
    conn.sender
        .send(ParentFrame::Run(RunRequest::new("hi")))
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(30), conn.receiver.recv())
        .await
        .unwrap();
    match frame {
        Some(Ok(ChildFrame::Terminal(t))) => {
            assert_eq!(t.result.as_deref(), Some("Bearer resident-token"))
        }
        other => panic!("expected a terminal frame, got {other:?}"),
    }
}

#[tokio::test]
async fn wss_with_an_untrusted_certificate_is_refused() {
    let (endpoint, _) = tls_server().await;
    let err = connect(&endpoint, None).await.map(|_| ()).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
