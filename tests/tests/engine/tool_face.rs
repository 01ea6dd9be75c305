//! The SubAgent tool's JSON face against `shared/subagent-tool.md`: one test
//! per verb (field names, statuses, notes), over real worker processes.

use bamboo_domain::{ChildStatus, Role};
use bamboo_e2e::engine::*;
use bamboo_engine::tool::{self, *};
use bamboo_engine::{CreateChild, Engine, Since};
use serde_json::{json, Value};

/// A successful tool call's result (panics with the error otherwise).
async fn ok(engine: &Engine, parent: &str, args: Value) -> Value {
    let out = tool::call(engine, parent, args.clone()).await;
    assert_eq!(out["success"], true, "{args} failed: {out}");
    out["result"].clone()
}

/// A failed tool call's error text.
async fn fails(engine: &Engine, parent: &str, args: Value) -> String {
    let out = tool::call(engine, parent, args.clone()).await;
    assert_eq!(out["success"], false, "{args} succeeded: {out}");
    out["result"].as_str().unwrap().to_owned()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

fn create_args(prompt: &str) -> Value {
    json!({"action": "create", "title": "Greeter", "responsibility": "greetings",
           "subagent_type": "writer", "prompt": prompt, "auto_run": false})
}

/// A running child (sleeping on its worker), created through the typed API so
/// its assignment starts with the echo sleep directive.
async fn running_child(engine: &Engine, root: &str) -> (String, bamboo_engine::EventStream) {
    let child = engine
        .create_child(CreateChild::new(root, "__sleep_ms:60000 slow __steer"))
        .await
        .unwrap();
    let mut events = engine.events(root, Since::Now);
    ok(
        engine,
        root,
        json!({"action": "run", "child_session_id": child.id}),
    )
    .await;
    // Started means persisted `running` (E6): the run is live from here.
    first_event(&mut events, "sub_agent_started", |e| {
        matches!(e, bamboo_domain::AgentEvent::SubAgentStarted { child_session_id, .. } if *child_session_id == child.id)
    })
    .await;
    (child.id, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_the_child_id_and_model_and_renders_the_assignment_c1() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let mut args = create_args("say hi");
    args["model"] = json!("openai/gpt-4o-mini");
    let r = ok(&engine, &root, args).await;
    assert_eq!(keys(&r), sorted(&["child_session_id", "model"]));
    assert_eq!(r["model"], "openai/gpt-4o-mini");
    let id = r["child_session_id"].as_str().unwrap();
    let s = engine.session(id).await.unwrap().unwrap();
    let first_user = s.messages.iter().find(|m| m.role == Role::User).unwrap();
    assert_eq!(
        first_user.content,
        "Title: Greeter\nResponsibility: greetings\nSubagent type: writer\n\nAssignment:\nsay hi"
    );
    let mut blank = create_args("  ");
    blank["auto_run"] = json!(true);
    assert!(fails(&engine, &root, blank).await.contains("prompt"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_auto_run_runs_the_rendered_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let mut events = engine.events(&root, Since::Now);
    let mut args = create_args("wave");
    args["auto_run"] = json!(true);
    let id = ok(&engine, &root, args).await["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    completion(&mut events, &id).await;
    let g = ok(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": id}),
    )
    .await;
    assert_eq!(g["last_run_status"], "completed");
    assert!(g["last_result"]
        .as_str()
        .unwrap()
        .ends_with("Assignment: wave"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_has_the_reference_fields() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let id = ok(&engine, &root, create_args("a")).await["child_session_id"].clone();
    let r = ok(&engine, &root, json!({"action": "list"})).await;
    assert_eq!(
        keys(&r),
        sorted(&["parent_session_id", "children", "count"])
    );
    assert_eq!(r["parent_session_id"], root.as_str());
    assert_eq!(r["count"], 1);
    let c = &r["children"][0];
    for k in [
        "child_session_id",
        "title",
        "subagent_type",
        "last_run_status",
        "is_running",
        "updated_at",
    ] {
        assert!(c.get(k).is_some(), "list entry lacks {k}: {c}");
    }
    assert_eq!(c["child_session_id"], id);
    assert_eq!(c["subagent_type"], "writer");
    assert_eq!(c["last_run_status"], "pending");
    assert_eq!(c["is_running"], false);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_has_every_reference_field_and_a_guidance_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let id = ok(&engine, &root, create_args("a")).await["child_session_id"].clone();
    let g = ok(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": id}),
    )
    .await;
    for k in [
        "child_session_id",
        "title",
        "model",
        "pinned",
        "message_count",
        "is_running",
        "last_run_status",
        "last_run_error",
        "responsibility",
        "subagent_type",
        "prompt",
        "latest_user_message",
        "runtime_kind",
        "external_protocol",
        "external_agent_id",
        "a2a_context_id",
        "a2a_latest_task_id",
        "a2a_last_state",
        "runner_started_at",
        "runner_completed_at",
        "last_tool_name",
        "last_tool_phase",
        "last_event_at",
        "round_count",
        "has_pending_injected_messages",
        "guidance",
    ] {
        assert!(g.get(k).is_some(), "get lacks {k}: {g}");
    }
    assert_eq!(g["prompt"], "a");
    assert_eq!(g["last_run_status"], "pending");
    assert_eq!(g["a2a_context_id"], Value::Null);
    assert_eq!(g["runner_started_at"], Value::Null);
    assert!(g["guidance"].as_str().unwrap().contains("action=run"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_rewrites_in_place_resets_to_pending_and_reports_removed_messages_c4() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    // A failed run leaves an error to clear.
    let (root, id) = root_and_child(&engine, "__fail:broken").await;
    let report = run_report(&engine, &root, &id).await;
    assert_eq!(report.error.as_deref(), Some("broken"));
    // A completed run leaves one assistant message after the assignment.
    let mut events = engine.events(&root, Since::Now);
    ok(
        &engine,
        &root,
        json!({"action": "update", "child_session_id": id, "prompt": "fixed"}),
    )
    .await;
    ok(
        &engine,
        &root,
        json!({"action": "run", "child_session_id": id}),
    )
    .await;
    completion(&mut events, &id).await;
    let r = ok(
        &engine,
        &root,
        json!({"action": "update", "child_session_id": id,
        "prompt": "again", "subagent_type": "critic", "responsibility": "review"}),
    )
    .await;
    assert_eq!(
        keys(&r),
        sorted(&[
            "child_session_id",
            "title",
            "messages_removed",
            "last_run_status",
            "note"
        ])
    );
    assert_eq!(r["messages_removed"], 1);
    assert_eq!(r["last_run_status"], "pending");
    assert_eq!(r["note"], NOTE_UPDATED);
    let s = engine.session(&id).await.unwrap().unwrap();
    assert_eq!(
        s.messages.last().unwrap().content,
        "Responsibility: review\nSubagent type: critic\n\nAssignment:\nagain"
    );
    assert_eq!(s.child.as_ref().unwrap().last_error, None);
    // Blank fields and empty updates are refused with the reference's text.
    let e = fails(
        &engine,
        &root,
        json!({"action": "update", "child_session_id": id, "prompt": " "}),
    )
    .await;
    assert!(e.contains("prompt is blank"), "{e}");
    let e = fails(
        &engine,
        &root,
        json!({"action": "update", "child_session_id": id}),
    )
    .await;
    assert_eq!(e, UPDATE_NEEDS_A_FIELD);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_clears_the_error_of_a_failed_child_c4() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, id) = root_and_child(&engine, "__fail:broken").await;
    run_report(&engine, &root, &id).await;
    let r = ok(
        &engine,
        &root,
        json!({"action": "update", "child_session_id": id, "responsibility": "fix it"}),
    )
    .await;
    assert_eq!(r["last_run_status"], "pending");
    let g = ok(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": id}),
    )
    .await;
    assert_eq!(g["last_run_error"], Value::Null);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_queues_in_place_and_a_running_child_answers_already_running_c5() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, id) = root_and_child(&engine, "first").await;
    run_report(&engine, &root, &id).await;
    let mut events = engine.events(&root, Since::Now);
    let r = ok(
        &engine,
        &root,
        json!({"action": "run", "child_session_id": id}),
    )
    .await;
    assert_eq!(
        keys(&r),
        sorted(&["child_session_id", "status", "messages_removed", "note"])
    );
    assert_eq!(r["status"], "queued");
    assert_eq!(
        r["messages_removed"], 1,
        "the first run's answer is dropped"
    );
    assert_eq!(r["note"], NOTE_RETRY_QUEUED);
    completion(&mut events, &id).await;

    let (busy, _events) = running_child(&engine, &root).await;
    let out = tool::call(
        &engine,
        &root,
        json!({"action": "run", "child_session_id": busy}),
    )
    .await;
    assert_eq!(
        out["success"], true,
        "already running is a result, not an error: {out}"
    );
    assert_eq!(
        out["result"],
        json!({"child_session_id": busy, "status": "already_running", "note": NOTE_ALREADY_RUNNING})
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_to_an_idle_child_appends_and_queues_or_waits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let (root, id) = root_and_child(&engine, "first").await;
    run_report(&engine, &root, &id).await;
    let r = ok(
        &engine,
        &root,
        json!({"action": "send_message", "child_session_id": id,
        "message": "later", "auto_run": false}),
    )
    .await;
    assert_eq!(
        keys(&r),
        sorted(&[
            "child_session_id",
            "status",
            "auto_run",
            "message",
            "message_count",
            "note"
        ])
    );
    assert_eq!(r["status"], "pending");
    assert_eq!(r["auto_run"], false);
    assert_eq!(r["message"], "later");
    assert_eq!(r["message_count"], 4, "system, assignment, answer, message");
    assert_eq!(r["note"], NOTE_APPENDED_IDLE);
    let mut events = engine.events(&root, Since::Now);
    let r = ok(
        &engine,
        &root,
        json!({"action": "send_message", "child_session_id": id, "message": "now"}),
    )
    .await;
    assert_eq!(r["status"], "queued");
    assert_eq!(r["auto_run"], true);
    assert_eq!(r["note"], NOTE_APPENDED_QUEUED);
    completion(&mut events, &id).await;
    let e = fails(
        &engine,
        &root,
        json!({"action": "send_message", "child_session_id": id, "message": "  "}),
    )
    .await;
    assert!(e.contains("message"), "{e}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_to_a_running_child_is_queued_for_its_next_turn_c6() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let (id, _events) = running_child(&engine, &root).await;
    let r = ok(
        &engine,
        &root,
        json!({"action": "send_message", "child_session_id": id, "message": "steer"}),
    )
    .await;
    assert_eq!(r["status"], "message_queued");
    assert_eq!(r["auto_run"], false);
    assert_eq!(r["note"], NOTE_MESSAGE_QUEUED);
    let g = ok(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": id}),
    )
    .await;
    assert_eq!(
        g["has_pending_injected_messages"], true,
        "get shows pending messages: {g}"
    );
    assert_eq!(g["is_running"], true);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_with_interrupt_cancels_then_runs_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let (id, mut events) = running_child(&engine, &root).await;
    let r = ok(
        &engine,
        &root,
        json!({"action": "send_message", "child_session_id": id,
        "message": "instead", "interrupt_running": true}),
    )
    .await;
    assert_eq!(r["status"], "queued");
    assert_eq!(r["note"], NOTE_APPENDED_QUEUED);
    // The interrupted run, then the run of the new message.
    completion(&mut events, &id).await;
    let (status, _) = completion(&mut events, &id).await;
    assert_eq!(status, bamboo_domain::CompletionStatus::Completed);
    let g = ok(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": id}),
    )
    .await;
    assert_eq!(g["last_result"], "echo: instead");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_an_idle_child_sets_cancelled_by_parent_c7() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let id = ok(&engine, &root, create_args("a")).await["child_session_id"].clone();
    let r = ok(
        &engine,
        &root,
        json!({"action": "cancel", "child_session_id": id}),
    )
    .await;
    assert_eq!(r, json!({"child_session_id": id, "status": "cancelled"}));
    let g = ok(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": id}),
    )
    .await;
    assert_eq!(g["last_run_status"], "cancelled");
    assert_eq!(g["last_run_error"], "Cancelled by parent");
    // And a running one: cancelled and awaited, with the same reason.
    let (busy, _events) = running_child(&engine, &root).await;
    ok(
        &engine,
        &root,
        json!({"action": "cancel", "child_session_id": busy}),
    )
    .await;
    let s = engine.session(&busy).await.unwrap().unwrap();
    let c = s.child.unwrap();
    assert_eq!(c.status, ChildStatus::Cancelled);
    assert_eq!(c.last_error.as_deref(), Some("Cancelled by parent"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_reports_whether_a_running_child_was_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let idle = ok(&engine, &root, create_args("a")).await["child_session_id"].clone();
    let r = ok(
        &engine,
        &root,
        json!({"action": "delete", "child_session_id": idle}),
    )
    .await;
    assert_eq!(
        r,
        json!({"child_session_id": idle, "deleted": true, "cancelled_running_child": false})
    );
    let (busy, _events) = running_child(&engine, &root).await;
    let r = ok(
        &engine,
        &root,
        json!({"action": "delete", "child_session_id": busy}),
    )
    .await;
    assert_eq!(r["cancelled_running_child"], true);
    assert!(engine.session(&busy).await.unwrap().is_none());
    let e = fails(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": busy}),
    )
    .await;
    assert!(e.contains("not found"), "{e}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cannot_be_reached_by_another_parent_c9() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 2).await;
    let root = engine.create_root("root", None).await.unwrap().id;
    let other = engine.create_root("other", None).await.unwrap().id;
    let id = ok(&engine, &root, create_args("a")).await["child_session_id"].clone();
    for action in ["get", "run", "cancel", "delete"] {
        let e = fails(
            &engine,
            &other,
            json!({"action": action, "child_session_id": id}),
        )
        .await;
        assert!(e.contains("not a child of"), "{action}: {e}");
    }
    engine.shutdown().await;
}
