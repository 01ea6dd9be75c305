//! End to end: real worker processes driven over real sockets (F1, F5, F7, F8, F10).

use std::time::{Duration, Instant};

use bamboo_domain::{AgentEvent, TerminalStatus};
use bamboo_e2e::*;
use bamboo_subagent::fabric::Fabric;
use bamboo_subagent::frames::{ChildFrame, ParentFrame, RunRequest};

fn run(text: &str) -> ParentFrame {
    ParentFrame::Run(RunRequest::new(text))
}

#[tokio::test]
async fn one_shot_run_streams_events_then_terminal_and_withdraws() {
    let dir = tempfile::tempdir().unwrap();
    let spec = echo_spec("one-shot", dir.path(), false);
    let mut worker = spawn(&spec).await;
    let pid = worker.pid().unwrap();
    let fabric = Fabric::new(dir.path());
    assert_eq!(fabric.resolve("one-shot").unwrap().pid, pid);
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("hello world")).await.unwrap();
    let (events, terminal) = collect_run(&mut conn.receiver).await;
    assert_eq!(
        events,
        vec![
            AgentEvent::token("hello "),
            AgentEvent::token("world "),
            AgentEvent::Complete { usage: None }
        ]
    );
    assert_eq!(terminal.status, TerminalStatus::Completed);
    assert_eq!(terminal.result.as_deref(), Some("echo: hello world"));
    drop(conn);
    assert!(
        wait_gone(pid, PATIENCE).await,
        "one-shot worker exits after its connection"
    );
    let _ = worker.is_alive();
    assert!(
        fabric.resolve("one-shot").is_none(),
        "record withdrawn on exit"
    );
}

#[tokio::test]
async fn reusable_worker_serves_two_connections_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut worker = spawn(&echo_spec("reuse", dir.path(), true)).await;
    let pid = worker.pid().unwrap();
    for word in ["first", "second"] {
        let mut conn = worker.connect().await.unwrap();
        conn.sender.send(run(word)).await.unwrap();
        let (_, t) = collect_run(&mut conn.receiver).await;
        assert_eq!(t.result.unwrap(), format!("echo: {word}"));
        assert_eq!(Fabric::new(dir.path()).resolve("reuse").unwrap().pid, pid);
        assert!(worker.is_alive());
    }
    // Two runs on one connection work as well.
    let mut conn = worker.connect().await.unwrap();
    for word in ["a", "b"] {
        conn.sender.send(run(word)).await.unwrap();
        let (_, t) = collect_run(&mut conn.receiver).await;
        assert_eq!(t.result.unwrap(), format!("echo: {word}"));
    }
    worker.kill().await;
    assert!(!worker.is_alive());
}

#[tokio::test]
async fn cancel_during_sleep_ends_cancelled_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("cancel", dir.path(), true)).await;
    let mut conn = worker.connect().await.unwrap();
    conn.sender
        .send(run("__sleep_ms:60000 never"))
        .await
        .unwrap();
    // Frames are handled in order, so the cancel finds the run active.
    let started = Instant::now();
    conn.sender.send(ParentFrame::Cancel).await.unwrap();
    let (events, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.status, TerminalStatus::Cancelled);
    assert!(events.is_empty(), "{events:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_second_run_supersedes_the_first_without_interleaving() {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("supersede", dir.path(), true)).await;
    let mut conn = worker.connect().await.unwrap();
    let many: Vec<String> = (0..5000).map(|i| format!("w{i}")).collect();
    conn.sender
        .send(run(&format!("__sleep_ms:50 {}", many.join(" "))))
        .await
        .unwrap();
    conn.sender.send(run("second run")).await.unwrap();
    // Whatever the first run managed to stream comes before its terminal; the
    // second run's events all come after it.
    let (first_events, first) = collect_run(&mut conn.receiver).await;
    assert_eq!(first.status, TerminalStatus::Cancelled);
    assert!(first_events
        .iter()
        .all(|e| !matches!(e, AgentEvent::Token { content } if content.starts_with("second"))));
    let (events, second) = collect_run(&mut conn.receiver).await;
    assert_eq!(second.result.as_deref(), Some("echo: second run"));
    assert_eq!(events[0], AgentEvent::token("second "));
}

#[tokio::test]
async fn steering_reaches_the_active_run() {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("steer", dir.path(), false)).await;
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("go __steer done")).await.unwrap();
    // The first token proves the run is active before we steer it.
    assert!(matches!(
        next_frame(&mut conn.receiver).await,
        ChildFrame::Event { .. }
    ));
    conn.sender
        .send(ParentFrame::Message {
            text: "left".into(),
        })
        .await
        .unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.result.as_deref(), Some("echo: go left done"));
}

async fn approval_round_trip(approve: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("approve", dir.path(), false)).await;
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("__approve:bash")).await.unwrap();
    let ChildFrame::ApprovalRequest { id, body } = next_frame(&mut conn.receiver).await else {
        panic!("expected an approval request");
    };
    assert!(id.starts_with("sa-") && id.len() > 30, "{id}");
    assert_eq!(body.tool_name, "bash");
    // Unknown ids are ignored; the run keeps waiting for the real one.
    conn.sender
        .send(ParentFrame::ApprovalReply {
            id: "sa-bogus".into(),
            approved: !approve,
        })
        .await
        .unwrap();
    conn.sender
        .send(ParentFrame::ApprovalReply {
            id: id.clone(),
            approved: approve,
        })
        .await
        .unwrap();
    // A duplicate reply is ignored too.
    conn.sender
        .send(ParentFrame::ApprovalReply {
            id,
            approved: !approve,
        })
        .await
        .unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    t.result.unwrap()
}

#[tokio::test]
async fn approval_approve_round_trips() {
    assert_eq!(approval_round_trip(true).await, "echo: approved:bash");
}

#[tokio::test]
async fn approval_deny_round_trips() {
    assert_eq!(approval_round_trip(false).await, "echo: denied:bash");
}

#[tokio::test]
async fn malformed_and_unknown_frames_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("malformed", dir.path(), false)).await;
    let mut conn = worker.connect().await.unwrap();
    for junk in [
        "garbage",
        "{}",
        r#"{"kind":"dance"}"#,
        r#"{"kind":"run"}"#,
        "[1,2]",
        r#"{"kind":"message"}"#,
    ] {
        conn.sender.send_raw(junk).await.unwrap();
    }
    conn.sender.send(ParentFrame::Cancel).await.unwrap(); // no active run: nothing happens
    conn.sender.send(run("still alive")).await.unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.result.as_deref(), Some("echo: still alive"));
}

#[tokio::test]
async fn client_disconnect_cancels_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("disconnect", dir.path(), true)).await;
    let conn = worker.connect().await.unwrap();
    conn.sender.send(run("__sleep_ms:600000 x")).await.unwrap();
    drop(conn);
    // The reusable worker serves one connection at a time: the next one is
    // served only once the abandoned run was cancelled.
    let started = Instant::now();
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("next")).await.unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.result.as_deref(), Some("echo: next"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn oversized_frame_closes_that_connection_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let spec = echo_spec("oversize", dir.path(), true);
    let mut worker = bamboo_subagent::fleet::spawn_worker(
        &worker_command(&["--max-frame-bytes", "65536"]),
        &spec,
        PATIENCE,
    )
    .await
    .unwrap();
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run(&"x".repeat(200_000))).await.unwrap();
    let closed = tokio::time::timeout(PATIENCE, conn.receiver.recv())
        .await
        .unwrap();
    assert!(
        !matches!(closed, Some(Ok(ChildFrame::Terminal(_)))),
        "{closed:?}"
    );
    assert!(worker.is_alive());
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("small")).await.unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.result.as_deref(), Some("echo: small"));
}

#[tokio::test]
async fn a_worker_killed_mid_run_gives_close_or_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut worker = spawn(&echo_spec("killed", dir.path(), false)).await;
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("__sleep_ms:600000 x")).await.unwrap();
    worker.kill().await;
    let got = tokio::time::timeout(PATIENCE, conn.receiver.recv())
        .await
        .expect("no hang");
    assert!(!matches!(got, Some(Ok(_))), "{got:?}");
}

#[tokio::test]
async fn stale_and_corrupt_records_are_invisible_beside_a_live_worker() {
    let dir = tempfile::tempdir().unwrap();
    let _worker = spawn(&echo_spec("live", dir.path(), true)).await;
    std::fs::write(dir.path().join("corrupt.json"), b"{\"agent_id\":").unwrap();
    let stale = serde_json::json!({"agent_id":"stale","endpoint":"ws://127.0.0.1:9","pid":1,
        "started_at":"2020-01-01T00:00:00Z","lease_expires_at":"2020-01-01T00:01:00Z"});
    std::fs::write(dir.path().join("stale.json"), stale.to_string()).unwrap();
    let fabric = Fabric::new(dir.path());
    let ids: Vec<_> = fabric.discover().into_iter().map(|r| r.agent_id).collect();
    assert_eq!(ids, ["live"]);
    assert_eq!(fabric.gc(), 2);
    assert!(fabric.resolve("live").is_some());
}

#[tokio::test]
async fn a_stale_record_with_the_same_id_is_not_mistaken_for_the_new_worker() {
    let dir = tempfile::tempdir().unwrap();
    let old = serde_json::json!({"agent_id":"same","endpoint":"ws://127.0.0.1:9","pid":1,
        "started_at":"2020-01-01T00:00:00Z","lease_expires_at":"2999-01-01T00:00:00Z"});
    std::fs::write(dir.path().join("same.json"), old.to_string()).unwrap();
    let worker = spawn(&echo_spec("same", dir.path(), false)).await;
    assert_ne!(worker.endpoint(), "ws://127.0.0.1:9");
    let mut conn = worker.connect().await.unwrap();
    conn.sender.send(run("ok")).await.unwrap();
    assert_eq!(
        collect_run(&mut conn.receiver).await.1.status,
        TerminalStatus::Completed
    );
}
