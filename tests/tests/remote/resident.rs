//! Resident workers on loopback, with real processes, TLS from a CA made in
//! the test, and a bearer token (F11; issue 10): the gate (healthz, 401,
//! plain ws:// to TLS, busy, token file and listen checks), the engine's
//! remote placement (100 children across two workers; a killed and a frozen
//! worker; cancel, steering and approvals over the link; a restarted worker;
//! SIGTERM with a run in flight).

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_e2e::engine::*;
use bamboo_e2e::remote::*;
use bamboo_engine::{CreateChild, Engine, SendMessage, SendOutcome, Since};
use bamboo_subagent::transport::client::{connect_with, ClientOptions};
use bamboo_subagent::transport::TransportError;
use bamboo_subagent::Secret;

fn tls_client(pki: &Pki) -> ClientOptions {
    ClientOptions {
        extra_root_certs: vec![pki.ca_der.clone()],
        ..ClientOptions::default()
    }
}

async fn connect_err(
    endpoint: &str,
    token: Option<&str>,
    options: &ClientOptions,
) -> TransportError {
    let token = token.map(Secret::new);
    connect_with(endpoint, token.as_ref(), options)
        .await
        .unwrap_err()
}

/// Creates a child of `root` at `placement` with `assignment` and runs it.
async fn start(engine: &Engine, root: &str, assignment: &str, r: &Resident) -> String {
    let mut input = CreateChild::new(root, assignment);
    input.placement = Some(remote(r));
    input.auto_run = true;
    engine.create_child(input).await.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_answers_healthz_refuses_bad_tokens_plain_clients_and_extra_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let worker = Resident::tls(dir.path(), &pki, 0, &["--max-runs", "1"]);
    let options = tls_client(&pki);

    // Wrong and missing token: a clear 401 naming the endpoint.
    for token in [Some("wrong-token"), None] {
        let err = connect_err(&worker.endpoint, token, &options).await;
        let text = err.to_string();
        assert!(matches!(err, TransportError::Unauthorized(_)), "{text}");
        assert!(
            text.contains("401") && text.contains(&worker.endpoint),
            "{text}"
        );
    }
    // Plain ws:// to the TLS listener: told to use wss://.
    let plain = worker.endpoint.replace("wss://", "ws://");
    let err = connect_err(&plain, Some(TOKEN), &options).await.to_string();
    assert!(err.contains("400") && err.contains("wss://"), "{err}");
    // No trusted CA: a TLS error that says so.
    let err = connect_err(&worker.endpoint, Some(TOKEN), &ClientOptions::default()).await;
    let text = err.to_string();
    assert!(matches!(err, TransportError::TlsHandshake { .. }), "{text}");

    // One run slot: the second connection is refused busy at once.
    let token = Secret::new(TOKEN);
    let first = connect_with(&worker.endpoint, Some(&token), &options)
        .await
        .unwrap();
    let started = Instant::now();
    let err = connect_err(&worker.endpoint, Some(TOKEN), &options).await;
    let text = err.to_string();
    assert!(matches!(err, TransportError::Busy { .. }), "{text}");
    assert!(text.contains("busy") && text.contains("503"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "busy is never a wait"
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_needs_no_token_and_reveals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Resident::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--token-file".into(),
        token_file(dir.path(), TOKEN).display().to_string(),
    ]);
    let addr = worker.endpoint.trim_start_matches("ws://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
}

/// Issue 25 part 7: `wss://` to a plain listener (a resident worker without
/// TLS, and a one-shot worker) fails at its first answer with "does not
/// speak TLS", well inside the 5 s handshake bound it used to wait out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_to_a_plain_listener_fails_at_once_saying_it_does_not_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Resident::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--token-file".into(),
        token_file(dir.path(), TOKEN).display().to_string(),
    ]);
    let fabric = dir.path().join("fabric");
    let one_shot = bamboo_e2e::spawn(&bamboo_e2e::echo_spec("c1", &fabric, true)).await;
    let one_shot_endpoint = one_shot.endpoint().to_owned();
    for plain in [worker.endpoint.clone(), one_shot_endpoint] {
        let secure = plain.replace("ws://", "wss://");
        let started = Instant::now();
        let err = connect_err(&secure, Some(TOKEN), &ClientOptions::default()).await;
        let text = err.to_string();
        assert!(matches!(err, TransportError::NotTls { .. }), "{text}");
        assert!(text.contains("this endpoint does not speak TLS"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "told at once, not after the handshake bound: {:?}",
            started.elapsed()
        );
    }
}

/// Issue 25 part 7: `serve --tls-self-signed localhost` makes a CA and a
/// leaf (key 0600), and `run --remote wss://localhost:PORT --ca-cert CA`
/// runs children on it end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tls_self_signed_and_run_with_its_ca_work_end_to_end() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let token = token_file(dir.path(), TOKEN).display().to_string();
    let worker = Resident::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--token-file".into(),
        token.clone(),
        "--tls-self-signed".into(),
        "localhost".into(),
        "--tls-dir".into(),
        tls_dir.display().to_string(),
    ]);
    assert!(worker.endpoint.starts_with("wss://"), "{}", worker.endpoint);
    let key_mode = std::fs::metadata(tls_dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let endpoint = format!("wss://localhost:{}", worker.port());
    let ca = tls_dir.join("ca.pem").display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bamboo_e2e::worker_bin())
            .args(["run", "--remote", &endpoint, "--token-file", &token])
            .args(["--ca-cert", &ca, "self-signed-alpha"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("self-signed-alpha"), "{stdout}");
}

fn serve_fails(args: &[&str]) -> String {
    let out = Command::new(bamboo_e2e::worker_bin())
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_readable_token_file_and_a_public_plain_listener_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let shown = token.display().to_string();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = serve_fails(&["--listen", "127.0.0.1:0", "--token-file", &shown]);
    assert!(err.contains("chmod 600") && err.contains(&shown), "{err}");
    assert!(!err.contains(TOKEN), "the token leaked: {err}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = serve_fails(&["--listen", "0.0.0.0:0", "--token-file", &shown]);
    assert!(
        err.contains("--insecure-no-tls") && err.contains("--tls-cert"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_children_run_across_two_tls_resident_workers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let a = Resident::tls(dir.path(), &pki, 0, &["--max-runs", "8"]);
    let b = Resident::tls(dir.path(), &pki, 0, &["--max-runs", "8"]);
    let engine = engine_builder(&dir.path().join("data"), 16, &pki, &[&a, &b], 8)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    let mut children = Vec::new();
    for i in 0..100 {
        let r = if i % 2 == 0 { &a } else { &b };
        children.push(start(&engine, &root.id, &format!("task-{i}"), r).await);
    }
    let mut done = 0;
    while done < children.len() {
        let ev = tokio::time::timeout(Duration::from_secs(120), events.recv())
            .await
            .expect("every child completes")
            .expect("stream open");
        if let AgentEvent::SubAgentCompleted { status, error, .. } = ev {
            assert_eq!(status, CompletionStatus::Completed, "{error:?}");
            done += 1;
        }
    }
    assert!(engine.stats().peak_running <= 16);
    let opened = engine.stats().workers_started;
    assert!(
        (2..=16).contains(&opened),
        "{opened} connections: at most 8 per worker, reused"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_a_frozen_worker_fail_their_children_within_ten_seconds_and_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let killed = Resident::tls(dir.path(), &pki, 0, &[]);
    let frozen = Resident::tls(dir.path(), &pki, 0, &[]);
    let healthy = Resident::tls(dir.path(), &pki, 0, &[]);
    let engine = engine_builder(
        &dir.path().join("data"),
        12,
        &pki,
        &[&killed, &frozen, &healthy],
        4,
    )
    .build()
    .await
    .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    let mut doomed = Vec::new();
    for r in [&killed, &frozen] {
        for _ in 0..2 {
            doomed.push(start(&engine, &root.id, "__sleep_ms:60000 never", r).await);
        }
    }
    let mut fine = Vec::new();
    for _ in 0..2 {
        fine.push(start(&engine, &root.id, "__sleep_ms:12000 fine", &healthy).await);
    }
    // Wait until every run is on its worker.
    let mut started = 0;
    while started < 6 {
        if let AgentEvent::SubAgentStarted { .. } = events.recv().await.unwrap() {
            started += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hit = Instant::now();
    killed.signal("-KILL");
    frozen.signal("-STOP");
    let mut ended = 0;
    while ended < 6 {
        let ev = tokio::time::timeout(Duration::from_secs(40), events.recv())
            .await
            .unwrap()
            .unwrap();
        let AgentEvent::SubAgentCompleted {
            child_session_id,
            status,
            error,
            ..
        } = ev
        else {
            continue;
        };
        ended += 1;
        if doomed.contains(&child_session_id) {
            assert_eq!(status, CompletionStatus::Error, "{error:?}");
            assert!(
                hit.elapsed() < Duration::from_secs(10),
                "took {:?}",
                hit.elapsed()
            );
        } else {
            assert!(fine.contains(&child_session_id));
            assert_eq!(status, CompletionStatus::Completed, "{error:?}");
        }
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_steering_and_an_approval_cross_a_remote_link_and_the_token_stays_in_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let worker = Resident::tls(dir.path(), &pki, 0, &[]);
    let data = dir.path().join("data");
    let engine = engine_builder(&data, 4, &pki, &[&worker], 4)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);

    // Cancel.
    let sleeper = start(&engine, &root.id, "__sleep_ms:60000 x", &worker).await;
    first_event(&mut events, "started", |e| {
        matches!(e, AgentEvent::SubAgentStarted { .. })
    })
    .await;
    let began = Instant::now();
    assert!(
        engine
            .cancel_child(&root.id, &sleeper)
            .await
            .unwrap()
            .was_running
    );
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(
        completion(&mut events, &sleeper).await.0,
        CompletionStatus::Cancelled
    );

    // Steering, in band.
    let steered = start(&engine, &root.id, "wait __steer", &worker).await;
    first_event(&mut events, "first token", |e| {
        token_text(e) == Some("wait ")
    })
    .await;
    let out = engine
        .send_message(&root.id, &steered, SendMessage::new("turn-left"))
        .await
        .unwrap();
    assert_eq!(out, SendOutcome::Steered { in_band: true });
    assert_eq!(
        completion(&mut events, &steered).await.0,
        CompletionStatus::Completed
    );
    let detail = engine.get_child(&root.id, &steered).await.unwrap();
    assert!(detail.last_result.unwrap_or_default().contains("turn-left"));

    // An approval round trip.
    let asking = start(&engine, &root.id, "__approve:deploy", &worker).await;
    let ev = first_event(&mut events, "approval", |e| {
        matches!(e, AgentEvent::ChildApprovalRequested { .. })
    })
    .await;
    let AgentEvent::ChildApprovalRequested { request_id, .. } = ev else {
        unreachable!()
    };
    engine.answer_approval(&request_id, true).unwrap();
    assert_eq!(
        completion(&mut events, &asking).await.0,
        CompletionStatus::Completed
    );
    engine.shutdown().await;

    // The token is nowhere in the engine's files (sessions, event logs, fabric).
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TOKEN),
            "token written to {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_child_naming_the_endpoint_and_401() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let worker = Resident::tls(dir.path(), &pki, 0, &[]);
    let mut endpoint = bamboo_engine::RemoteEndpoint::new(Secret::new("not-the-token"));
    endpoint.ca_certs = vec![pki.ca_der.clone()];
    let engine = engine_builder(&dir.path().join("data"), 2, &pki, &[], 1)
        .remote_worker(worker.endpoint.clone(), endpoint)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    let child = start(&engine, &root.id, "hello", &worker).await;
    let (status, error) = completion(&mut events, &child).await;
    assert_eq!(status, CompletionStatus::Error);
    let error = error.unwrap();
    assert!(
        error.contains(&worker.endpoint) && error.contains("401"),
        "{error}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_worker_restarted_between_runs_is_reached_again() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut first = Resident::tls(dir.path(), &pki, 0, &[]);
    let port = first.port();
    let engine = engine_builder(&dir.path().join("data"), 2, &pki, &[&first], 2)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    let one = start(&engine, &root.id, "one", &first).await;
    assert_eq!(
        completion(&mut events, &one).await.0,
        CompletionStatus::Completed
    );
    first.signal("-TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).await.success());
    let second = Resident::tls(dir.path(), &pki, port, &[]);
    assert_eq!(second.endpoint, first.endpoint);
    let two = start(&engine, &root.id, "two", &second).await;
    let (status, error) = completion(&mut events, &two).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    engine.shutdown().await;
}

/// A resident worker (started with `flags`) serving one run that waits for a
/// steering message, SIGTERMed once the run is surely on it (its first token
/// is back). Returns the engine, the root's stream, the root, the child and
/// the worker.
async fn sigterm_mid_run(
    dir: &std::path::Path,
    flags: &[&str],
) -> (Engine, bamboo_engine::EventStream, String, String, Resident) {
    let pki = Pki::new(dir);
    let worker = Resident::tls(dir, &pki, 0, flags);
    let engine = engine_builder(&dir.join("data"), 2, &pki, &[&worker], 2)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap().id;
    let mut events = engine.events(&root, Since::Start);
    let child = start(&engine, &root, "working __steer finishing", &worker).await;
    first_event(&mut events, "the first token", |e| {
        token_text(e) == Some("working ")
    })
    .await;
    worker.signal("-TERM");
    (engine, events, root, child, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_run_in_flight_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, mut events, root, child, mut worker) = sigterm_mid_run(dir.path(), &[]).await;
    // The steering message the run waits for comes after the SIGTERM.
    let sent = engine
        .send_message(&root, &child, SendMessage::new("still here"))
        .await
        .unwrap();
    assert_eq!(sent, SendOutcome::Steered { in_band: true });
    let (status, error) = completion(&mut events, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    assert!(worker.wait_exit(Duration::from_secs(30)).await.success());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_a_run_past_the_grace_period_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // The steering message never comes: the grace period passes.
    let (engine, mut events, _, child, mut worker) =
        sigterm_mid_run(dir.path(), &["--grace-secs", "1"]).await;
    let (status, _) = completion(&mut events, &child).await;
    assert_ne!(status, CompletionStatus::Completed);
    assert!(worker.wait_exit(Duration::from_secs(30)).await.success());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_runs_children_on_a_resident_worker() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let worker = Resident::tls(dir.path(), &pki, 0, &[]);
    let token = token_file(dir.path(), TOKEN).display().to_string();
    let ca = pki.ca_pem.display().to_string();
    let endpoint = worker.endpoint.clone();
    let run = move |extra: &[&str]| {
        let mut cmd = Command::new(bamboo_e2e::worker_bin());
        cmd.args(["run", "--remote", &endpoint, "--token-file", &token])
            .args(extra)
            .args(["remote-alpha", "remote-beta"])
            .stdin(std::process::Stdio::null());
        cmd.output().unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let (run, ca) = (run.clone(), ca.clone());
        move || run(&["--ca-cert", &ca])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("remote-alpha") && stdout.contains("remote-beta"),
        "{stdout}"
    );
    // Without the CA the certificate is not trusted: said once, before any
    // child, as a usage error (issue 25).
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&[])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(all.matches("TLS handshake").count(), 1, "{all}");
    assert!(all.contains("no child was started"), "{all}");
    // A wrong token: the same, naming the 401.
    let wrong = token_file(dir.path(), "a-wrong-token-of-another-length");
    let endpoint = worker.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bamboo_e2e::worker_bin())
            .args(["run", "--remote", &endpoint, "--token-file"])
            .arg(&wrong)
            .args(["--ca-cert", &ca, "remote-alpha", "remote-beta"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert_eq!(all.matches("401").count(), 1, "{all}");
    assert!(
        !all.contains("a-wrong-token"),
        "the token stays secret: {all}"
    );
}

/// Issue 25: a busy resident worker (503) means wait and ask again, never a
/// failed child. A default `serve` (4 runs at a time) with `run --remote`
/// (8 at a time): all 8 children complete, with the default `--remote-max`
/// (children wait in the front door) and with `--remote-max 8` (the worker
/// answers busy and is asked again).
#[test]
fn eight_children_against_a_default_serve_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let worker = Resident::start(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--token-file".into(),
        token.display().to_string(),
    ]);
    for extra in [&[][..], &["--remote-max", "8"][..]] {
        let mut cmd = Command::new(bamboo_e2e::worker_bin());
        cmd.args(["run", "--remote", &worker.endpoint, "--token-file"])
            .arg(&token)
            .args(extra)
            .env("NO_COLOR", "1");
        for i in 0..8 {
            cmd.arg(format!("__sleep_ms:300 child {i}"));
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{extra:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("8 of 8 runs completed"), "{text}");
        assert!(!text.contains("busy"), "{text}");
    }
}

/// Issue 22: an engine with a NATS pool as well as a resident worker capped
/// at one connection never holds two connections to that worker: four runs
/// on it take turns on the one connection (the cap is taken whatever other
/// placements the engine serves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_endpoint_capped_at_one_keeps_one_connection_beside_a_nats_pool() {
    let nats = bamboo_e2e::nats::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // The worker would take four runs at once: only the engine's cap holds.
    let worker = Resident::tls(dir.path(), &pki, 0, &["--max-runs", "4"]);
    let pool = bamboo_pool::PoolClient::connect(
        &bamboo_pool::NatsOptions::new(nats.url()),
        bamboo_pool::ClientSettings::default(),
    )
    .await
    .unwrap();
    let engine = engine_builder(&dir.path().join("data"), 4, &pki, &[&worker], 1)
        .nats_pool(pool)
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    for i in 0..4 {
        start(
            &engine,
            &root.id,
            &format!("__sleep_ms:200 task-{i}"),
            &worker,
        )
        .await;
    }
    let mut done = 0;
    while done < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("every child completes")
            .expect("stream open");
        if let AgentEvent::SubAgentCompleted { status, error, .. } = ev {
            assert_eq!(status, CompletionStatus::Completed, "{error:?}");
            done += 1;
        }
    }
    // Each connection opened to the worker counts as a worker started; the
    // four runs took turns on one (without the cap, all four opened one).
    assert_eq!(
        engine.stats().workers_started,
        1,
        "one connection to the capped worker, reused by every run"
    );
    engine.shutdown().await;
}
