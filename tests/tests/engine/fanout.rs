//! Fan-out through the engine with real workers: limits, pooled reuse,
//! shutdown leaves nothing behind (E2, E5-E7, E10-E14).

use std::collections::{HashMap, HashSet};

use bamboo_domain::{AgentEvent, ChildStatus, CompletionStatus};
use bamboo_e2e::engine::*;
use bamboo_engine::CreateChild;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_children_at_limit_four_complete_with_pooled_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 4).await;
    let root = engine.create_root("fan-out", None).await.unwrap();
    let mut events = engine.events(&root.id, bamboo_engine::Since::Now);
    let mut ids = Vec::new();
    for i in 0..50 {
        let c = engine
            .create_child(CreateChild::new(
                &root.id,
                format!("__sleep_ms:20 child {i}"),
            ))
            .await
            .unwrap();
        ids.push(c.id);
    }
    let mut tickets = Vec::new();
    for id in &ids {
        tickets.push(engine.run_child(&root.id, id, true).await.unwrap());
    }
    let mut pids: HashMap<u32, usize> = HashMap::new();
    for t in tickets {
        let report = tokio::time::timeout(SOON * 2, t).await.unwrap().unwrap();
        assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
        *pids.entry(report.worker_pid.unwrap()).or_default() += 1;
    }
    // Every completion reached the parent stream.
    let mut completed = HashSet::new();
    while completed.len() < 50 {
        match events.recv().await {
            Some(AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                ..
            }) => {
                assert_eq!(status, CompletionStatus::Completed);
                completed.insert(child_session_id);
            }
            Some(_) => {}
            None => panic!("the root's stream ended early"),
        }
    }
    let stats = engine.stats();
    assert!(stats.peak_running <= 4, "peak {} > 4", stats.peak_running);
    assert!(
        stats.workers_started <= 8,
        "pooling should start far fewer workers than 50 children, started {}",
        stats.workers_started
    );
    assert!(
        pids.values().any(|n| *n >= 3),
        "one worker pid should serve several children: {pids:?}"
    );
    for id in &ids {
        let d = engine.get_child(&root.id, id).await.unwrap();
        assert_eq!(d.status, ChildStatus::Completed);
        assert!(d
            .last_result
            .as_deref()
            .unwrap_or("")
            .starts_with("echo: child"));
    }
    engine.shutdown().await;
    for pid in pids.keys() {
        assert!(
            bamboo_e2e::wait_gone(*pid, SOON).await,
            "worker {pid} outlived shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_forwarded_wrapped_in_order_with_started_and_completed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "alpha beta gamma").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let ev = events.recv().await.unwrap();
        let done = matches!(ev, AgentEvent::SubAgentCompleted { .. });
        seen.push(ev);
        if done {
            break;
        }
    }
    assert!(
        matches!(seen[0], AgentEvent::SubAgentStarted { .. }),
        "{seen:?}"
    );
    let tokens: Vec<_> = seen.iter().filter_map(token_text).collect();
    assert_eq!(tokens, vec!["alpha ", "beta ", "gamma "]);
    let detail = engine.get_child(&root, &child).await.unwrap();
    assert_eq!(
        detail.last_result.as_deref(),
        Some("echo: alpha beta gamma")
    );
    assert_eq!(detail.round_count, 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_pending_is_skipped_and_a_second_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, child) = root_and_child(&engine, "__sleep_ms:400 hi").await;
    let mut events = engine.events(&root, bamboo_engine::Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let again = engine.run_child(&root, &child, true).await;
    assert!(
        matches!(again, Err(bamboo_engine::EngineError::AlreadyRunning(_))),
        "{again:?}"
    );
    assert_eq!(
        completion(&mut events, &child).await.0,
        CompletionStatus::Completed
    );
    // The last message is now the assistant's: a run without reset has nothing to do.
    engine.run_child(&root, &child, false).await.unwrap();
    assert_eq!(
        completion(&mut events, &child).await.0,
        CompletionStatus::Skipped
    );
    engine.shutdown().await;
}

/// A worker parked in the pool longer than `worker_idle` is retired: its
/// process exits and the pool is empty, while a recent one is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_idle_in_the_pool_too_long_is_retired() {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(dir.path(), 2)
        .timeouts(bamboo_engine::Timeouts {
            worker_idle: std::time::Duration::from_millis(300),
            ..bamboo_engine::Timeouts::default()
        })
        .build()
        .await
        .unwrap();
    let (root, child) = root_and_child(&engine, "hi").await;
    let report = run_report(&engine, &root, &child).await;
    assert_eq!(report.status, CompletionStatus::Completed, "{report:?}");
    let pid = report.worker_pid.expect("a local worker has a pid");
    assert_eq!(engine.stats().idle_workers, 1, "parked after a clean run");
    assert!(
        bamboo_e2e::wait_gone(pid, SOON).await,
        "idle worker {pid} was never retired"
    );
    assert_eq!(engine.stats().idle_workers, 0);
    engine.shutdown().await;
}

/// E2 + E12: an `auto_run` child is created already running when a slot is
/// free, and created pending (its run queued) when none is; both complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_run_starts_at_once_with_a_free_slot_and_queues_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1).await;
    let root = engine.create_root("r", None).await.unwrap();
    let mut events = engine.events(&root.id, bamboo_engine::Since::Now);
    let auto = |assignment: &str| {
        let mut input = CreateChild::new(&root.id, assignment);
        input.auto_run = true;
        input
    };
    let first = engine.create_child(auto("__sleep_ms:300 a")).await.unwrap();
    assert_eq!(first.status, ChildStatus::Running, "{first:?}");
    let second = engine.create_child(auto("b")).await.unwrap();
    assert_eq!(second.status, ChildStatus::Pending, "{second:?}");
    assert_eq!(
        completion(&mut events, &first.id).await.0,
        CompletionStatus::Completed
    );
    assert_eq!(
        completion(&mut events, &second.id).await.0,
        CompletionStatus::Completed
    );
    let stored = engine.session(&first.id).await.unwrap().unwrap();
    assert_eq!(stored.child.unwrap().round_count, 1);
    assert_eq!(engine.stats().peak_running, 1);
    engine.shutdown().await;
}
