//! Bounded waits on the worker link, with real processes and sockets: a
//! stalled handshake, a squatting connection, a frozen worker, a killed
//! worker (F7, F8, E9, E13; issue 9).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_domain::{CompletionStatus, TerminalStatus};
use bamboo_e2e::engine::*;
use bamboo_engine::Timeouts;
use bamboo_subagent::frames::{ParentFrame, RunRequest};

/// The documented error of a worker that died mid-run (docs/operations.md).
const CLOSED_MID_RUN: &str =
    "worker connection closed before the run ended (the worker process exited or was killed)";

fn signal(pid: u32, sig: &str) {
    // The engine may have killed the worker already: no complaint then.
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_answers_the_upgrade_fails_the_child_within_the_handshake_bound() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 1)
        .worker_program(env!("CARGO_BIN_EXE_stall_worker"))
        .timeouts(Timeouts {
            handshake: Duration::from_secs(1),
            ..Timeouts::default()
        })
        .build()
        .await
        .unwrap();
    let (root, child) = root_and_child(&engine, "hello").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    let started = Instant::now();
    engine.run_child(&root, &child, true).await.unwrap();
    let (status, error) = completion(&mut events, &child).await;
    let took = started.elapsed();
    let error = error.unwrap_or_default();
    assert_eq!(status, CompletionStatus::Error, "{error}");
    // Two fresh workers, one handshake bound each, plus their spawns.
    assert!(
        took >= Duration::from_secs(2),
        "retried once: took {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for needle in [
        "WebSocket handshake with ws://127.0.0.1:",
        "did not finish within 1s",
        "a first fresh worker timed out the same way",
    ] {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    engine.shutdown().await;
}

/// A program holding a silent TCP connection to `addr` for `secs` seconds,
/// as another local user when the tests run as root (any local user can
/// connect to a worker's loopback port). Returns once it is connected.
fn squat(addr: &str, secs: u32) -> std::process::Child {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!("exec 3<>/dev/tcp/{host}/{port} && echo connected && sleep {secs}");
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if as_root && std::path::Path::new("/usr/bin/setpriv").exists() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "bash",
            "-c",
            &script,
        ]);
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-c", &script]);
        c
    };
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "connected", "the squatter could not connect");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_held_against_a_worker_does_not_delay_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = bamboo_e2e::echo_spec("squatted", dir.path(), false);
    let worker = bamboo_e2e::spawn(&spec).await;
    let addr = worker.endpoint().trim_start_matches("ws://").to_owned();
    let mut squatter = squat(&addr, 30);
    let started = Instant::now();
    let mut conn = worker.connect().await.unwrap();
    conn.sender
        .send(ParentFrame::Run(RunRequest::new("hello past the squatter")))
        .await
        .unwrap();
    let (_, terminal) = bamboo_e2e::collect_run(&mut conn.receiver).await;
    let took = started.elapsed();
    assert_eq!(terminal.status, TerminalStatus::Completed);
    assert!(
        took < Duration::from_secs(5),
        "the run waited {took:?} behind a silent connection"
    );
    let _ = squatter.kill();
    let _ = squatter.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_an_error_within_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1).await;
    let (mut events, _, child, pid) = start_child(&engine, "__sleep_ms:60000 frozen").await;
    let stopped_at = Instant::now();
    signal(pid, "-STOP");
    let (status, error) = completion(&mut events, &child).await;
    let took = stopped_at.elapsed();
    signal(pid, "-CONT");
    signal(pid, "-KILL");
    let error = error.unwrap_or_default();
    assert_eq!(status, CompletionStatus::Error, "{error}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Silence counts from the worker's last ping, at most one period before the stop.
    let t = Timeouts::default();
    assert!(
        took >= t.keepalive_timeout - t.keepalive_interval,
        "took {took:?}"
    );
    assert!(error.contains("silent for 8s"), "{error}");
    assert!(error.contains("frozen or unreachable"), "{error}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_is_busy_but_not_frozen_outlives_the_keepalive_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 1)
        .timeouts(Timeouts {
            keepalive_interval: Duration::from_millis(200),
            keepalive_timeout: Duration::from_secs(1),
            ..Timeouts::default()
        })
        .build()
        .await
        .unwrap();
    // Three keepalive limits without a single event.
    let (root, child) = root_and_child(&engine, "__sleep_ms:3000 thinking").await;
    let report = run_report(&engine, &root, &child).await;
    assert_eq!(
        report.status,
        CompletionStatus::Completed,
        "{:?}",
        report.error
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_gives_the_documented_message() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1).await;
    let (mut events, _, child, pid) = start_child(&engine, "__sleep_ms:60000 doomed").await;
    signal(pid, "-KILL");
    let (status, error) = completion(&mut events, &child).await;
    assert_eq!(status, CompletionStatus::Error);
    assert_eq!(error.as_deref(), Some(CLOSED_MID_RUN));
    engine.shutdown().await;
}
