//! Issue 24 end to end, with real worker processes running the
//! `bamboo_runtime` executor against a scripted model server: what `get`
//! says about a running child's tool (C10), what a child inherits (S4),
//! and the per-child limits (C11, F15).

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used)]

mod engine_support;

use std::sync::Arc;

use bamboo_domain::{
    AgentEvent, ChildStatus, CompletionStatus, ModelRef, TaskItem, TaskItemStatus, TaskList,
    TokenBudget,
};
use bamboo_engine::CredentialResolver;
use bamboo_engine::{tool, Engine, NewRoot, Since};
use bamboo_subagent::spec::{ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;
use bamboo_testkit::{Reply, ScriptedServer};
use engine_support::*;
use serde_json::{json, Value};

#[derive(Debug)]
struct Key(String);

impl CredentialResolver for Key {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        Some(ProviderCredential {
            provider: provider.into(),
            api_key: Secret::new("sk-test-key"),
            base_url: Some(self.0.clone()),
            provider_type: None,
        })
    }
}

async fn llm_engine(dir: &std::path::Path, server: &ScriptedServer) -> Engine {
    builder(dir, 2)
        .executor(ExecutorSpec::BambooRuntime)
        .credentials(Arc::new(Key(server.base_url.clone())))
        .enforce_permissions(false)
        .build()
        .await
        .unwrap()
}

/// A root on the scripted model, with `workspace` and optional budget and tasks.
async fn root(
    engine: &Engine,
    workspace: &std::path::Path,
    budget: Option<TokenBudget>,
    tasks: Option<TaskList>,
) -> String {
    let mut r = NewRoot::new("root");
    r.model = ModelRef::parse("openai/test-model");
    r.workspace = Some(workspace.to_str().unwrap().to_owned());
    r.token_budget = budget;
    r.task_list = tasks;
    engine.create_root_with(r).await.unwrap().id
}

/// A SubAgent tool call that must succeed; its result.
async fn ok(engine: &Engine, parent: &str, args: Value) -> Value {
    let out = tool::call(engine, parent, args.clone()).await;
    assert_eq!(out["success"], true, "{args} -> {out}");
    out["result"].clone()
}

fn create(prompt: &str, extra: Value) -> Value {
    let mut v = json!({"action": "create", "title": "worker", "responsibility": "the work",
        "subagent_type": "coder", "prompt": prompt});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

async fn get(engine: &Engine, parent: &str, child: &str) -> Value {
    ok(
        engine,
        parent,
        json!({"action": "get", "child_session_id": child}),
    )
    .await
}

fn child_tool_event(ev: &AgentEvent, want: fn(&AgentEvent) -> bool) -> bool {
    matches!(ev, AgentEvent::SubAgentEvent { event, .. } if want(event))
}

#[tokio::test]
async fn c10_get_on_a_running_llm_child_shows_its_current_tool_and_phase() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    // The command waits until the test lets it go, so the child is caught
    // in the middle of its tool call without any sleep in the test.
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "c1",
            "run_command",
            json!({"command": "while [ ! -e go ]; do sleep 0.02; done; echo went"}),
        )]),
        Reply::text("done"),
    ])
    .await
    .unwrap();
    let engine = llm_engine(dir.path(), &server).await;
    let parent = root(&engine, ws.path(), None, None).await;
    let mut rx = engine.events(&parent, Since::Now);
    let child = ok(&engine, &parent, create("run the command", json!({}))).await
        ["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    first_event(&mut rx, "tool_start", |e| {
        child_tool_event(e, |e| matches!(e, AgentEvent::ToolStart { .. }))
    })
    .await;
    let live = get(&engine, &parent, &child).await;
    assert_eq!(live["is_running"], true, "{live:#}");
    assert_eq!(live["last_tool_name"], "run_command");
    assert_eq!(live["last_tool_phase"], "started");

    std::fs::write(ws.path().join("go"), "").unwrap();
    first_event(&mut rx, "tool_complete", |e| {
        child_tool_event(e, |e| matches!(e, AgentEvent::ToolComplete { .. }))
    })
    .await;
    let after_tool = get(&engine, &parent, &child).await;
    assert_eq!(after_tool["last_tool_phase"], "completed", "{after_tool:#}");
    assert_eq!(
        completion(&mut rx, &child).await.0,
        CompletionStatus::Completed
    );
    let done = get(&engine, &parent, &child).await;
    assert_eq!(done["is_running"], false);
    assert_eq!(done["last_tool_name"], "run_command");
    assert_eq!(done["last_tool_phase"], "completed");
    engine.shutdown().await;
    drop(engine);

    // Kept with the child: a new engine on the same data says the same.
    let again = llm_engine(dir.path(), &server).await;
    let reopened = get(&again, &parent, &child).await;
    assert_eq!(reopened["last_tool_phase"], "completed");
    again.shutdown().await;
}

#[tokio::test]
async fn s4_a_child_under_a_budgeted_parent_compresses_at_70_35_and_gets_the_task_list() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[("t", "task_list", json!({"id": "2", "status": "completed"}))]),
        Reply::text("done"),
    ])
    .await
    .unwrap();
    let engine = llm_engine(dir.path(), &server).await;
    let tasks = TaskList {
        items: vec![
            TaskItem {
                id: "1".into(),
                description: "plan the work".into(),
                status: TaskItemStatus::Completed,
            },
            TaskItem {
                id: "2".into(),
                description: "check the tests".into(),
                status: TaskItemStatus::Pending,
            },
        ],
    };
    let parent = root(
        &engine,
        ws.path(),
        Some(TokenBudget::new(100_000)),
        Some(tasks.clone()),
    )
    .await;
    let mut rx = engine.events(&parent, Since::Now);
    let child = ok(&engine, &parent, create("check the tests", json!({}))).await
        ["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = engine.get_child(&parent, &child).await.unwrap();
    let budget = detail.token_budget.expect("the child has a budget");
    assert_eq!(budget.max_context_tokens, 100_000);
    assert_eq!(
        (
            budget.compression_trigger_percent,
            budget.compression_target_percent
        ),
        (70, 35)
    );
    assert_eq!(detail.task_list.as_ref(), Some(&tasks));
    assert_eq!(
        completion(&mut rx, &child).await.0,
        CompletionStatus::Completed
    );
    // The worker showed the model the parent's list and offered the tool.
    let first = &server.received()[0];
    let shown = first.body["messages"].as_array().unwrap().iter().any(|m| {
        m["content"]
            .as_str()
            .unwrap_or_default()
            .contains("- [pending] 2: check the tests")
    });
    assert!(shown, "{:#}", first.body["messages"]);
    // The child's own copy took the change; the parent's did not.
    let stored = engine.session(&child).await.unwrap().unwrap();
    assert_eq!(
        stored.task_list.unwrap().items[1].status,
        TaskItemStatus::Completed
    );
    let parent_list = engine.session(&parent).await.unwrap().unwrap().task_list;
    assert_eq!(parent_list, Some(tasks));
    engine.shutdown().await;
}

#[tokio::test]
async fn c11_max_rounds_from_the_tool_stops_a_loop_that_wants_more_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let looping: Vec<Reply> = (0..5)
        .map(|i| Reply::tool_calls(&[(&format!("c{i}") as &str, "list_dir", json!({}))]))
        .collect();
    let server = ScriptedServer::start(looping).await.unwrap();
    let engine = llm_engine(dir.path(), &server).await;
    let parent = root(&engine, ws.path(), None, None).await;
    let mut rx = engine.events(&parent, Since::Now);
    let child = ok(&engine, &parent, create("loop", json!({"max_rounds": 2}))).await
        ["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Error);
    let error = error.unwrap_or_default();
    assert!(error.contains("reached limits.max_rounds (2)"), "{error}");
    assert_eq!(server.received().len(), 2, "no third round was asked for");
    engine.shutdown().await;
}

#[tokio::test]
async fn c11_a_read_only_child_created_through_the_tool_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "w",
            "write_file",
            json!({"path": "out.txt", "content": "x"}),
        )]),
        Reply::text("could not write"),
    ])
    .await
    .unwrap();
    let engine = llm_engine(dir.path(), &server).await;
    let parent = root(&engine, ws.path(), None, None).await;
    let mut rx = engine.events(&parent, Since::Now);
    let child = ok(
        &engine,
        &parent,
        create("write out.txt", json!({"read_only": true})),
    )
    .await["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = first_event(&mut rx, "tool_error", |e| {
        child_tool_event(e, |e| matches!(e, AgentEvent::ToolError { .. }))
    })
    .await;
    let AgentEvent::SubAgentEvent { event, .. } = refused else {
        unreachable!()
    };
    let AgentEvent::ToolError { error, .. } = *event else {
        unreachable!()
    };
    assert!(error.contains("read-only"), "{error}");
    completion(&mut rx, &child).await;
    assert!(
        !ws.path().join("out.txt").exists(),
        "a read-only child wrote"
    );
    let detail = engine.get_child(&parent, &child).await.unwrap();
    assert!(detail.read_only);
    assert_eq!(detail.status, ChildStatus::Completed);
    let got = get(&engine, &parent, &child).await;
    assert_eq!(
        (
            got["last_tool_name"].as_str(),
            got["last_tool_phase"].as_str()
        ),
        (Some("write_file"), Some("error"))
    );
    engine.shutdown().await;
}

/// C11 through the front door: `--max-turns 1` stops a child whose model
/// wants a second round, and `--read-only` kept its one write from running.
#[tokio::test]
async fn c11_front_door_max_turns_and_read_only_reach_the_llm_child() {
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "w",
            "write_file",
            json!({"path": "out.txt", "content": "x"}),
        )]),
        Reply::text("never asked for"),
    ])
    .await
    .unwrap();
    let ws = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--executor", "llm", "--model", "openai/test-model"])
        .args([
            "--base-url",
            &server.base_url,
            "--max-turns",
            "1",
            "--read-only",
        ])
        .args(["--workspace", ws.path().to_str().unwrap(), "write it"])
        .env("OPENAI_API_KEY", "sk-from-env")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("reached limits.max_rounds (1)"), "{text}");
    assert!(
        !ws.path().join("out.txt").exists(),
        "a read-only child wrote"
    );
    assert_eq!(server.received().len(), 1);
}

/// Flags the cli executor cannot honour are refused before anything runs.
#[test]
fn c11_front_door_refuses_read_only_and_max_turns_for_cli_children() {
    for (flag, expected) in [
        (
            &["--read-only"][..],
            "--read-only cannot be enforced on --executor cli",
        ),
        (
            &["--max-turns", "3"][..],
            "--max-turns is not yet supported for --executor cli",
        ),
    ] {
        let out = std::process::Command::new(bamboo_e2e::worker_bin())
            .args(["run", "--executor", "cli"])
            .args(flag)
            .args(["x", "--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag:?}: {err}");
        assert!(err.contains(expected), "{flag:?}: {err}");
    }
}
