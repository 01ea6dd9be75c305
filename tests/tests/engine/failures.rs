//! Failure paths with real workers: a killed worker, the watchdog, delete while
//! running, restart recovery, shutdown (E3, E9, E13, E19, C7, C8).

use std::time::{Duration, Instant};

use bamboo_domain::{AgentEvent, ChildStatus, CompletionStatus};
use bamboo_e2e::engine::*;
use bamboo_engine::CreateChild;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_an_error_within_a_second_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (mut events, root, child, pid) = start_child(&engine, "__sleep_ms:20000 never").await;
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let (status, error) = completion(&mut events, &child).await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(1),
        "took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        error.unwrap_or_default().contains("worker"),
        "reason names the worker"
    );
    let d = engine.get_child(&root, &child).await.unwrap();
    assert_eq!(d.status, ChildStatus::Error);
    // A fresh run must not land on the dead worker.
    let (_, next) = root_and_child(&engine, "again").await;
    let root2 = engine
        .session(&next)
        .await
        .unwrap()
        .unwrap()
        .parent_id
        .unwrap();
    let report = engine
        .run_child(&root2, &next, true)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(report.status, CompletionStatus::Completed);
    assert_ne!(report.worker_pid, Some(pid));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_watchdog_stops_a_silent_child_with_status_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("r", None).await.unwrap();
    let mut input = CreateChild::new(&root.id, "__sleep_ms:20000 silent");
    input.idle_timeout_secs = Some(1);
    let child = engine.create_child(input).await.unwrap();
    let mut events = engine.events(&root.id, bamboo_engine::Since::Now);
    engine.run_child(&root.id, &child.id, true).await.unwrap();
    let (status, error) = completion(&mut events, &child.id).await;
    assert_eq!(status, CompletionStatus::Timeout);
    assert!(error.unwrap_or_default().contains("idle_timeout_secs"));
    let d = engine.get_child(&root.id, &child.id).await.unwrap();
    assert_eq!(d.status, ChildStatus::Timeout);
    assert!(d.last_error.unwrap_or_default().contains("watchdog"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_delete_stop_a_running_child_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "__sleep_ms:20000 long").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    first_event(&mut events, "started", |e| {
        matches!(e, AgentEvent::SubAgentStarted { .. })
    })
    .await;
    let out = engine.cancel_child(&root, &child).await.unwrap();
    assert!(out.was_running);
    let d = engine.get_child(&root, &child).await.unwrap();
    assert_eq!(d.status, ChildStatus::Cancelled);
    assert!(
        d.last_error
            .unwrap_or_default()
            .contains("Cancelled by parent"),
        "C7: the reference's reason"
    );

    engine.run_child(&root, &child, true).await.unwrap();
    first_event(&mut events, "started", |e| {
        matches!(e, AgentEvent::SubAgentStarted { .. })
    })
    .await;
    let out = engine.delete_child(&root, &child).await.unwrap();
    assert!(out.cancelled_running);
    assert_eq!(out.deleted, 1);
    assert!(engine.session(&child).await.unwrap().is_none());
    assert!(engine.list_children(&root).await.unwrap().is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_can_only_touch_its_own_children() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (_, child) = root_and_child(&engine, "x").await;
    let other = engine.create_root("other", None).await.unwrap();
    let err = engine.get_child(&other.id, &child).await.unwrap_err();
    assert!(
        matches!(err, bamboo_engine::EngineError::NotYourChild { .. }),
        "{err}"
    );
    assert!(engine.delete_child(&other.id, &child).await.is_err());
    assert!(engine.session(&child).await.unwrap().is_some());
    engine.shutdown().await;
}

#[test]
fn restarting_on_the_same_data_dir_marks_an_orphaned_running_child_as_error() {
    let dir = tempfile::tempdir().unwrap();
    // The first engine "dies": its runtime is dropped mid-run.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (root, child) = rt.block_on(async {
        let engine = engine(dir.path(), 2).await;
        let (root, child) = root_and_child(&engine, "__sleep_ms:20000 orphan").await;
        let mut events = engine.events(&root, bamboo_engine::Since::Now);
        engine.run_child(&root, &child, true).await.unwrap();
        first_event(&mut events, "started", |e| {
            matches!(e, AgentEvent::SubAgentStarted { .. })
        })
        .await;
        assert_eq!(
            engine.get_child(&root, &child).await.unwrap().status,
            ChildStatus::Running
        );
        (root, child)
    });
    drop(rt);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = engine(dir.path(), 2).await;
        let d = engine.get_child(&root, &child).await.unwrap();
        assert_eq!(d.status, ChildStatus::Error);
        assert!(d.last_error.unwrap_or_default().contains("engine stopped"));
        engine.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_runs_and_leaves_no_worker_alive() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 4).await;
    let root = engine.create_root("r", None).await.unwrap();
    let mut events = engine.events(&root.id, bamboo_engine::Since::Now);
    let mut pids = Vec::new();
    // Two finished (parked) and two running.
    for assignment in ["a", "b", "__sleep_ms:20000 c", "__sleep_ms:20000 d"] {
        let c = engine
            .create_child(CreateChild::new(&root.id, assignment))
            .await
            .unwrap();
        let t = engine.run_child(&root.id, &c.id, true).await.unwrap();
        if !assignment.starts_with("__") {
            pids.extend(t.await.unwrap().worker_pid);
        } else {
            first_event(&mut events, "started", |e| {
                matches!(e, AgentEvent::SubAgentStarted { child_session_id, .. } if *child_session_id == c.id)
            })
            .await;
            loop {
                if let Some(p) = engine.get_child(&root.id, &c.id).await.unwrap().worker_pid {
                    pids.push(p);
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
    }
    assert!(engine.stats().workers_started >= 2);
    engine.shutdown().await;
    for pid in pids {
        assert!(
            bamboo_e2e::process_gone(pid),
            "worker {pid} is still alive after shutdown"
        );
    }
    let kids = engine.list_children(&root.id).await.unwrap();
    assert!(
        kids.iter().all(|k| k.status != ChildStatus::Running),
        "{kids:?}"
    );
    let late = engine
        .create_child(CreateChild {
            auto_run: true,
            ..CreateChild::new(&root.id, "late")
        })
        .await;
    assert!(
        matches!(late, Err(bamboo_engine::EngineError::ShuttingDown)),
        "{late:?}"
    );
}

/// The engine removes stale worker records from its fabric (left by workers
/// killed with SIGKILL), and leaves live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_removes_stale_records_from_its_fabric() {
    let dir = tempfile::tempdir().unwrap();
    let fabric = dir.path().join("fabric");
    std::fs::create_dir_all(&fabric).unwrap();
    let stale = serde_json::json!({"agent_id":"w-stale","endpoint":"ws://127.0.0.1:9","pid":1,
        "started_at":"2020-01-01T00:00:00Z","lease_expires_at":"2020-01-01T00:01:00Z"});
    std::fs::write(fabric.join("w-stale.json"), stale.to_string()).unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "hi").await;
    let report = run_report(&engine, &root, &child).await;
    assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
    let deadline = tokio::time::Instant::now() + SOON;
    while fabric.join("w-stale.json").exists() {
        assert!(tokio::time::Instant::now() < deadline, "stale record kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = bamboo_subagent::fabric::Fabric::new(&fabric).discover();
    assert_eq!(live.len(), 1, "the parked worker's record stays: {live:?}");
    engine.shutdown().await;
}
