//! End to end through the engine with real worker processes: the cli_adapter
//! and bamboo_runtime executors (issue 4), and the `run` front door for both.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used)]

mod engine_support;

use std::process::Command;
use std::sync::Arc;

use bamboo_domain::{AgentEvent, ChildStatus, ModelRef};
use bamboo_engine::CredentialResolver;
use bamboo_engine::{async_trait, ApprovalPolicy, ApprovalRequest, CreateChild, Engine};
use bamboo_subagent::spec::{ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;
use bamboo_testkit::{Reply, ScriptedServer};
use engine_support::*;
use serde_json::json;

fn cli(script: &str) -> ExecutorSpec {
    ExecutorSpec::CliAdapter {
        command: "sh".into(),
        args: vec![
            "-c".into(),
            script.into(),
            "sh".into(),
            "{assignment}".into(),
        ],
    }
}

/// Permissions are enforced by default (fail closed); these tests are about
/// the executor, so they opt out explicitly.
async fn cli_engine(dir: &std::path::Path, script: &str) -> Engine {
    builder(dir, 2)
        .executor(cli(script))
        .enforce_permissions(false)
        .build()
        .await
        .unwrap()
}

/// Runs one child to completion; returns its parent-stream events and detail.
async fn run_child(
    engine: &Engine,
    assignment: &str,
    workspace: Option<&str>,
) -> (Vec<AgentEvent>, bamboo_engine::ChildDetail) {
    let root = engine
        .create_root("root", Some(ModelRef::parse("openai/test-model").unwrap()))
        .await
        .unwrap();
    let mut rx = engine.events(&root.id, bamboo_engine::Since::Now);
    let mut input = CreateChild::new(&root.id, assignment);
    input.workspace = workspace.map(str::to_owned);
    input.auto_run = true;
    let child = engine.create_child(input).await.unwrap();
    let mut events = Vec::new();
    let wait = async {
        loop {
            match rx.recv().await.unwrap() {
                // Where the run runs is the engine's note, not the child's.
                AgentEvent::SubAgentEvent { event, .. }
                    if matches!(*event, AgentEvent::Placed { .. }) => {}
                AgentEvent::SubAgentEvent { event, .. } => events.push(*event),
                AgentEvent::SubAgentCompleted { .. } => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .expect("child completes");
    (events, engine.get_child(&root.id, &child.id).await.unwrap())
}

#[tokio::test]
async fn cli_child_streams_lines_and_json_events_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = cli_engine(
        dir.path(),
        r#"echo "working on $1"; echo '{"type":"tool_start","tool_call_id":"t1","tool_name":"grep","arguments":{}}'; echo '{"type":"result","result":"all done"}'"#,
    )
    .await;
    let (events, detail) = run_child(&engine, "the task", None).await;
    assert_eq!(
        detail.status,
        ChildStatus::Completed,
        "{:?}",
        detail.last_error
    );
    assert_eq!(detail.last_result.as_deref(), Some("all done"));
    assert_eq!(events[0], AgentEvent::token("working on the task\n"));
    assert!(
        matches!(&events[1], AgentEvent::ToolStart { tool_name, .. } if tool_name == "grep"),
        "{events:?}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn cli_child_failing_reports_exit_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let engine = cli_engine(dir.path(), "echo 'disk on fire' >&2; exit 3").await;
    let (_, detail) = run_child(&engine, "x", None).await;
    assert_eq!(detail.status, ChildStatus::Error);
    let err = detail.last_error.unwrap();
    assert!(err.contains('3') && err.contains("disk on fire"), "{err}");
    engine.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_cli_child_kills_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!(
        "sleep 600 & echo $! > {}; echo started; wait",
        pidfile.display()
    );
    let engine = cli_engine(dir.path(), &script).await;
    let (root, child) = root_and_child(&engine, "x").await;
    let mut rx = engine.events(&root, bamboo_engine::Since::Now);
    engine.run_child(&root, &child, false).await.unwrap();
    first_event(&mut rx, "the started line", |e| {
        matches!(e, AgentEvent::SubAgentEvent { event, .. } if !matches!(**event, AgentEvent::Placed { .. }))
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    engine.cancel_child(&root, &child).await.unwrap();
    assert!(
        bamboo_e2e::wait_gone(pid, SOON).await,
        "grandchild {pid} outlived the cancel"
    );
    assert_eq!(
        engine.get_child(&root, &child).await.unwrap().status,
        ChildStatus::Cancelled
    );
    engine.shutdown().await;
}

#[derive(Debug)]
struct Deny;

#[async_trait]
impl ApprovalPolicy for Deny {
    async fn decide(&self, _: &ApprovalRequest) -> Option<bool> {
        Some(false)
    }
}

#[tokio::test]
async fn cli_child_with_enforced_permissions_is_stopped_by_a_denial() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let engine = builder(dir.path(), 2)
        .executor(cli(&format!("touch {}", marker.display())))
        .enforce_permissions(true)
        .approval_policy(Arc::new(Deny))
        .build()
        .await
        .unwrap();
    let (_, detail) = run_child(&engine, "x", None).await;
    assert_eq!(detail.status, ChildStatus::Error);
    assert!(detail.last_error.unwrap().contains("denied"));
    assert!(
        !marker.exists(),
        "the program must not start without approval"
    );
    engine.shutdown().await;
}

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

#[tokio::test]
async fn llm_child_runs_tool_rounds_in_its_workspace_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "c1",
            "write_file",
            json!({"path":"notes.txt","content":"hello from the model"}),
        )]),
        Reply::tool_calls(&[("c2", "read_file", json!({"path":"notes.txt"}))]),
        Reply::text("The file says hello."),
    ])
    .await
    .unwrap();
    let engine = llm_engine(dir.path(), &server).await;
    let (events, detail) =
        run_child(&engine, "write a note", Some(ws.path().to_str().unwrap())).await;
    assert_eq!(
        detail.status,
        ChildStatus::Completed,
        "{:?}",
        detail.last_error
    );
    assert_eq!(detail.last_result.as_deref(), Some("The file says hello."));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes.txt")).unwrap(),
        "hello from the model"
    );
    let starts = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ToolStart { .. }))
        .count();
    let completes = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ToolComplete { .. }))
        .count();
    assert_eq!((starts, completes), (2, 2), "{events:?}");
    let received = server.received();
    assert_eq!(received.len(), 3);
    let auth = received[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Bearer sk-test-key"));
    assert_eq!(received[0].body["model"], "test-model");
    engine.shutdown().await;
}

#[tokio::test]
async fn llm_child_unauthorized_names_provider_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![Reply::status(401)])
        .await
        .unwrap();
    let engine = llm_engine(dir.path(), &server).await;
    let (_, detail) = run_child(&engine, "x", None).await;
    assert_eq!(detail.status, ChildStatus::Error);
    let err = detail.last_error.unwrap();
    assert!(err.contains("openai") && err.contains("401"), "{err}");
    assert!(!err.contains("sk-test-key"));
    engine.shutdown().await;
}

#[tokio::test]
async fn front_door_runs_llm_children_with_the_key_from_its_environment() {
    let server = ScriptedServer::start(vec![Reply::text("hi from the model")])
        .await
        .unwrap();
    let ws = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--executor",
            "llm",
            "--model",
            "openai/test-model",
            "--base-url",
            &server.base_url,
        ])
        .args(["--workspace", ws.path().to_str().unwrap(), "say hi"])
        .env("OPENAI_API_KEY", "sk-from-env")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The streamed answer is the result: shown once, not printed again.
    assert!(
        text.contains("[say-hi] hi from the model\n[say-hi] completed"),
        "{text}"
    );
    let auth = server.received()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer sk-from-env"));
}

/// Issue 25 part 7: a keyless local endpoint needs no dummy key. With a
/// loopback base URL (here from OPENAI_BASE_URL, the fallback of
/// --base-url) and no key variable set, the llm child runs and no
/// Authorization header is sent; `--api-key-env ''` says the same for any URL.
#[tokio::test]
async fn front_door_runs_llm_children_against_a_keyless_loopback_endpoint() {
    for explicit_no_key in [false, true] {
        let server = ScriptedServer::start(vec![Reply::text("hi from a local model")])
            .await
            .unwrap();
        let ws = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(bamboo_e2e::worker_bin());
        cmd.args(["run", "--executor", "llm", "--model", "openai/local-model"])
            .args(["--workspace", ws.path().to_str().unwrap()])
            .env_remove("OPENAI_API_KEY")
            .env("OPENAI_BASE_URL", &server.base_url);
        if explicit_no_key {
            cmd.args(["--api-key-env", ""]);
        }
        let out = cmd.arg("say hi").output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("[say-hi] hi from a local model"), "{text}");
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert!(
            !received[0]
                .headers
                .iter()
                .any(|(k, _)| k == "authorization"),
            "no key, no header: {:?}",
            received[0].headers
        );
    }
}

#[test]
fn front_door_runs_cli_children_and_gates_them_on_approval() {
    let run = |approve: &str| {
        Command::new(bamboo_e2e::worker_bin())
            .args([
                "run",
                "--executor",
                "cli",
                "--approve",
                approve,
                "first",
                "second",
                "--",
            ])
            .args(["sh", "-c", "echo did $1", "sh", "{assignment}"])
            .output()
            .unwrap()
    };
    let ok = run("all");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("[first] did first\n") && text.contains("2 of 2 runs completed"),
        "{text}"
    );
    let denied = run("none");
    let text = String::from_utf8_lossy(&denied.stdout);
    assert_eq!(denied.status.code(), Some(1), "{text}");
    assert!(
        text.contains("denied") && text.contains("0 of 2 runs completed"),
        "{text}"
    );
}

/// `run --executor cli --model P/M`: the program gets P's key under P's usual
/// variable, and nothing else secret; without `--model` it gets no key.
#[test]
fn front_door_gives_a_cli_child_its_providers_key_only_when_asked() {
    let run = |extra: &[&str]| {
        let out = Command::new(bamboo_e2e::worker_bin())
            .args(["run", "--executor", "cli", "--approve", "all"])
            .args(extra)
            .args(["go", "--", "sh", "-c"])
            .arg(r#"echo "anthropic=${ANTHROPIC_API_KEY:-none} other=${OTHER_TOKEN:-none}""#)
            .env("ANTHROPIC_API_KEY", "sk-ant-from-env")
            .env("OTHER_TOKEN", "tok-must-not-leak")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let with_key = run(&["--model", "anthropic/claude-test"]);
    assert!(
        with_key.contains("anthropic=sk-ant-from-env other=none"),
        "{with_key}"
    );
    let without = run(&[]);
    assert!(without.contains("anthropic=none other=none"), "{without}");
}

/// Flags that do not fit the executor are refused with exit 2 and a line that
/// says which flag goes where.
#[test]
fn front_door_refuses_flags_of_another_executor() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--model", "openai/m", "x"],
            "--model and --api-key-env apply only",
        ),
        (
            &[
                "--executor",
                "cli",
                "--base-url",
                "http://h",
                "x",
                "--",
                "true",
            ],
            "--base-url applies only",
        ),
        (
            &["--executor", "cli", "--api-key-env", "K", "x", "--", "true"],
            "--api-key-env needs --model",
        ),
        (&["--command", "true", "x"], "apply only to --executor cli"),
    ];
    for (args, expected) in cases {
        let out = Command::new(bamboo_e2e::worker_bin())
            .arg("run")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
