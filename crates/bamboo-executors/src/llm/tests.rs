//! Tests of the bamboo_runtime executor against a scripted local HTTP server.

use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::{AgentEvent, Message, Role, TerminalStatus};
use bamboo_subagent::executor::{Executor, HostBridge, RunRequest};
use bamboo_subagent::spec::ProvisionSpec;
use serde_json::{json, Value};

use super::client::RetryPolicy;
use super::LlmExecutor;
use crate::testkit::{
    cancel_and_wait, drain, events_until, test_run, tokens, Received, Reply, ScriptedHost,
    ScriptedServer,
};

const LIMIT: Duration = Duration::from_secs(20);
const KEY: &str = "sk-test-key-123";

fn spec(base_url: &str, extra: Value) -> ProvisionSpec {
    let mut v = json!({
        "version": 1,
        "identity": {"child_id": "c1", "role": "tester"},
        "executor": {"kind": "bamboo_runtime"},
        "fabric_dir": "/tmp/unused-fabric",
        "model": {"provider": "openai", "model": "gpt-test"},
        "secrets": {"provider_credentials": [{"provider": "openai", "api_key": KEY, "base_url": base_url}]},
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in more {
            base.insert(k.clone(), val.clone());
        }
    }
    ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("test spec")
}

fn exec(server: &ScriptedServer, extra: Value) -> LlmExecutor {
    LlmExecutor::from_spec(&spec(&server.base_url, extra)).with_retry(RetryPolicy {
        retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    })
}

fn messages(req: &Received) -> Vec<Value> {
    req.body["messages"].as_array().cloned().unwrap_or_default()
}

fn tool_names(req: &Received) -> Vec<String> {
    req.body["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn text_with_usage(text: &str) -> Reply {
    let mut chunks: Vec<Value> = text
        .split_inclusive(' ')
        .map(|w| json!({"choices":[{"index":0,"delta":{"content": w}}]}))
        .collect();
    chunks.push(json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}));
    chunks.push(
        json!({"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}),
    );
    Reply::sse(chunks)
}

async fn run(
    exec: &LlmExecutor,
    request: RunRequest,
    host: Option<Arc<dyn HostBridge>>,
) -> (bamboo_subagent::executor::RunOutcome, Vec<AgentEvent>) {
    let mut t = test_run(host);
    let out = tokio::time::timeout(LIMIT, exec.run(request, t.ctx))
        .await
        .expect("run ends");
    (out, drain(&mut t.events))
}

#[tokio::test]
async fn plain_answer_streams_tokens_and_reports_usage_on_complete() {
    let server = ScriptedServer::start(vec![text_with_usage("Hello there world")])
        .await
        .expect("server");
    let e = exec(&server, json!({}));
    let (out, events) = run(&e, RunRequest::new("say hello"), None).await;
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    assert_eq!(out.result.as_deref(), Some("Hello there world"));
    assert_eq!(tokens(&events), "Hello there world");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Token { .. }))
            .count(),
        3
    );
    match events.last() {
        Some(AgentEvent::Complete { usage: Some(u) }) => {
            assert_eq!(
                (u.prompt_tokens, u.completion_tokens, u.total_tokens),
                (11, 3, 14)
            )
        }
        other => panic!("expected complete with usage, got {other:?}"),
    }
    let reqs = server.received();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == &format!("Bearer {KEY}")));
    assert_eq!(r.body["model"], "gpt-test");
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"]["include_usage"], true);
    let msgs = messages(r);
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(
        msgs.last().map(|m| m["content"].clone()),
        Some(json!("say hello"))
    );
    // No workspace, no nested spawn: no tools offered.
    assert!(r.body.get("tools").is_none());
    assert!(!format!("{e:?}").contains(KEY));
}

#[tokio::test]
async fn tool_calls_run_across_rounds_in_the_workspace() {
    let ws = tempfile::tempdir().expect("tempdir");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "call_w",
            "write_file",
            json!({"path": "notes/a.txt", "content": "hello file"}),
        )]),
        Reply::tool_calls(&[
            ("call_r", "read_file", json!({"path": "notes/a.txt"})),
            ("call_l", "list_dir", json!({"path": "notes"})),
        ]),
        text_with_usage("The file says hello file"),
    ])
    .await
    .expect("server");
    let e = exec(&server, json!({"workspace": ws.path()}));
    let (out, events) = run(&e, RunRequest::new("write then read"), None).await;
    assert_eq!(
        out.result.as_deref(),
        Some("The file says hello file"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes/a.txt")).expect("file"),
        "hello file"
    );

    let tool_events: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolStart { tool_name, .. } => Some(("start", tool_name.as_str())),
            AgentEvent::ToolComplete { tool_name, .. } => Some(("complete", tool_name.as_str())),
            AgentEvent::ToolError { tool_name, .. } => Some(("error", tool_name.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        tool_events,
        vec![
            ("start", "write_file"),
            ("complete", "write_file"),
            ("start", "read_file"),
            ("complete", "read_file"),
            ("start", "list_dir"),
            ("complete", "list_dir")
        ]
    );
    let reqs = server.received();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        tool_names(&reqs[0]),
        vec!["read_file", "list_dir", "write_file", "run_command"]
    );
    let third = messages(&reqs[2]);
    let tool_msgs: Vec<&Value> = third.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 3);
    assert_eq!(tool_msgs[1]["tool_call_id"], "call_r");
    assert_eq!(tool_msgs[1]["content"], "hello file");
    assert_eq!(tool_msgs[2]["content"], "a.txt");
    let assistant_calls = third
        .iter()
        .find(|m| m["role"] == "assistant")
        .expect("assistant turn");
    assert_eq!(
        assistant_calls["tool_calls"][0]["function"]["name"],
        "write_file"
    );
    let transcript = out.transcript.expect("transcript");
    assert_eq!(transcript.first().map(|m| m.role), Some(Role::User));
    assert_eq!(
        transcript.last().map(|m| m.content.as_str()),
        Some("The file says hello file")
    );
}

#[tokio::test]
async fn denied_approval_is_the_tools_result_not_a_crash() {
    let ws = tempfile::tempdir().expect("tempdir");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[
            (
                "c1",
                "write_file",
                json!({"path": "x.txt", "content": "nope"}),
            ),
            ("c2", "run_command", json!({"command": "touch ran"})),
        ]),
        text_with_usage("understood"),
    ])
    .await
    .expect("server");
    let e = exec(
        &server,
        json!({"workspace": ws.path(), "capabilities": {"enforce_permissions": true}}),
    );
    let host = ScriptedHost::new(false);
    let (out, events) = run(
        &e,
        RunRequest::new("try"),
        Some(host.clone() as Arc<dyn HostBridge>),
    )
    .await;
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    assert!(!ws.path().join("x.txt").exists() && !ws.path().join("ran").exists());
    let errors: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolError { error, .. } => Some(error.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec!["denied by approver", "denied by approver"]);
    let asked = host.approvals.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        asked
            .iter()
            .map(|a| (
                a.tool_name.as_str(),
                a.permission_type.as_str(),
                a.resource.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("write_file", "write", "x.txt"),
            ("run_command", "execute", "touch ran")
        ]
    );
    let second = messages(&server.received()[1]);
    assert!(second
        .iter()
        .any(|m| m["role"] == "tool" && m["content"] == "denied by approver"));
}

#[tokio::test]
async fn approved_commands_run_in_the_workspace() {
    let ws = tempfile::tempdir().expect("tempdir");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "c1",
            "run_command",
            json!({"command": "echo hi > made.txt; echo out; exit 4"}),
        )]),
        text_with_usage("ran"),
    ])
    .await
    .expect("server");
    let e = exec(
        &server,
        json!({"workspace": ws.path(), "capabilities": {"enforce_permissions": true}}),
    );
    let (out, events) = run(
        &e,
        RunRequest::new("go"),
        Some(ScriptedHost::new(true) as Arc<dyn HostBridge>),
    )
    .await;
    assert_eq!(out.status, TerminalStatus::Completed);
    assert!(ws.path().join("made.txt").exists());
    let result = events.iter().find_map(|e| match e {
        AgentEvent::ToolComplete { result, .. } => Some(result.clone()),
        _ => None,
    });
    let result = result.expect("tool_complete");
    assert!(
        result.contains("exit status: 4") && result.contains("out"),
        "{result}"
    );
}

#[tokio::test]
async fn workspace_escapes_are_refused() {
    let ws = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").expect("write");
    std::os::unix::fs::symlink(outside.path(), ws.path().join("sneaky")).expect("symlink");
    let abs = outside.path().join("secret.txt");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[
            ("a", "read_file", json!({"path": abs.to_string_lossy()})),
            (
                "b",
                "read_file",
                json!({"path": "../../../../../../etc/passwd"}),
            ),
            ("c", "read_file", json!({"path": "sneaky/secret.txt"})),
            (
                "d",
                "write_file",
                json!({"path": "sneaky/planted.txt", "content": "x"}),
            ),
        ]),
        text_with_usage("ok"),
    ])
    .await
    .expect("server");
    let e = exec(&server, json!({"workspace": ws.path()}));
    let (out, events) = run(&e, RunRequest::new("escape"), None).await;
    assert_eq!(out.status, TerminalStatus::Completed);
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolError { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 4, "{events:?}");
    assert!(
        errors.iter().all(|e| e.contains("outside the workspace")),
        "{errors:?}"
    );
    assert!(!outside.path().join("planted.txt").exists());
    let second = serde_json::to_string(&messages(&server.received()[1])).unwrap_or_default();
    assert!(!second.contains("TOP SECRET"));
}

#[tokio::test]
async fn unauthorized_names_provider_status_and_the_key_to_check() {
    let server = ScriptedServer::start(vec![Reply::status(401)])
        .await
        .expect("server");
    let (out, _) = run(&exec(&server, json!({})), RunRequest::new("hi"), None).await;
    assert_eq!(out.status, TerminalStatus::Error);
    let err = out.error.unwrap_or_default();
    assert!(
        err.contains("openai returned 401 Unauthorized: check the API key for provider openai"),
        "{err}"
    );
    assert!(!err.contains(KEY));
    assert_eq!(server.received().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn rate_limit_is_retried_then_succeeds() {
    let server = ScriptedServer::start(vec![
        Reply::status(429),
        Reply::status(503),
        text_with_usage("finally"),
    ])
    .await
    .expect("server");
    let (out, events) = run(&exec(&server, json!({})), RunRequest::new("hi"), None).await;
    assert_eq!(out.result.as_deref(), Some("finally"), "{out:?}");
    assert_eq!(server.received().len(), 3);
    // Each retry is told, so a person sees why the child waits.
    let retries: Vec<(u32, String)> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Retrying {
                attempt, reason, ..
            } => Some((*attempt, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2, "{events:?}");
    assert_eq!(retries[0].0, 2);
    assert!(retries[0].1.starts_with("429"), "{retries:?}");
    assert!(retries[1].1.starts_with("503"), "{retries:?}");
}

#[tokio::test]
async fn server_errors_exhaust_bounded_retries() {
    let server = ScriptedServer::start(vec![Reply::status(500); 6])
        .await
        .expect("server");
    let (out, _) = run(&exec(&server, json!({})), RunRequest::new("hi"), None).await;
    let err = out.error.unwrap_or_default();
    assert!(
        err.contains("openai returned 500 Internal Server Error")
            && err.contains("gave up after 3 retries"),
        "{err}"
    );
    assert!(
        err.contains("scripted 500"),
        "server message is shown: {err}"
    );
    assert_eq!(server.received().len(), 4, "one attempt plus three retries");
}

#[tokio::test]
async fn malformed_streams_end_the_run_with_a_clear_error() {
    let server = ScriptedServer::start(vec![
        Reply::raw("data: <html>gateway</html>\n\n"),
        Reply {
            status: 200,
            chunks: vec!["data: {\"choices\":[{\"delta\":{\"content\":\"cut \"}}]}\n\n".into()],
            hang: false,
            delay: std::time::Duration::ZERO,
        },
    ])
    .await
    .expect("server");
    let e = exec(&server, json!({}));
    let (out, _) = run(&e, RunRequest::new("hi"), None).await;
    let err = out.error.unwrap_or_default();
    assert!(
        err.contains("openai sent a malformed stream") && err.contains("<html>"),
        "{err}"
    );
    let (out, events) = run(&e, RunRequest::new("hi"), None).await;
    let err = out.error.unwrap_or_default();
    assert!(err.contains("ended before [DONE]"), "{err}");
    assert_eq!(tokens(&events), "cut ");
}

#[tokio::test]
async fn a_stalled_stream_is_cancelled_at_once() {
    let server = ScriptedServer::start(vec![Reply {
        status: 200,
        chunks: vec!["data: {\"choices\":[{\"delta\":{\"content\":\"partial \"}}]}\n\n".into()],
        hang: true,
        delay: std::time::Duration::ZERO,
    }])
    .await
    .expect("server");
    let e = exec(&server, json!({}));
    let mut t = test_run(None);
    let cancel = t.cancel.clone();
    let task = tokio::spawn(async move { e.run(RunRequest::new("hi"), t.ctx).await });
    let seen = events_until(&mut t.events, LIMIT, |e| {
        matches!(e, AgentEvent::Token { .. })
    })
    .await;
    assert_eq!(tokens(&seen), "partial ");
    let (out, took) = cancel_and_wait(&cancel, task, LIMIT).await;
    assert_eq!(out.status, TerminalStatus::Cancelled);
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
}

#[tokio::test]
async fn stalled_stream_times_out_with_idle_limit() {
    let server = ScriptedServer::start(vec![Reply {
        status: 200,
        chunks: vec![],
        hang: true,
        delay: std::time::Duration::ZERO,
    }])
    .await
    .expect("server");
    let e = exec(&server, json!({})).with_idle_timeout(Duration::from_millis(300));
    let (out, _) = run(&e, RunRequest::new("hi"), None).await;
    let err = out.error.unwrap_or_default();
    assert!(err.contains("openai sent nothing for"), "{err}");
}

#[tokio::test]
async fn steering_is_admitted_between_rounds() {
    let ws = tempfile::tempdir().expect("tempdir");
    let t = test_run(None);
    let steer = t.steer.clone();
    // Steering arrives while round 1 is in flight.
    let server = ScriptedServer::start_with(
        vec![
            Reply::tool_calls(&[("c1", "list_dir", json!({}))]),
            text_with_usage("bye"),
        ],
        Box::new(move |n| {
            if n == 0 {
                let _ = steer.send("also say bye".into());
            }
        }),
    )
    .await
    .expect("server");
    let e = exec(&server, json!({"workspace": ws.path()}));
    let out = tokio::time::timeout(LIMIT, e.run(RunRequest::new("look around"), t.ctx))
        .await
        .expect("ends");
    assert_eq!(out.result.as_deref(), Some("bye"));
    let reqs = server.received();
    let first = messages(&reqs[0]);
    assert!(!first.iter().any(|m| m["content"] == "also say bye"));
    let second = messages(&reqs[1]);
    let last = second.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("user"), Some("also say bye"))
    );
    assert_eq!(
        second[second.len() - 2]["role"],
        "tool",
        "admitted after the tool results"
    );
}

#[tokio::test]
async fn prior_transcript_is_rehydrated_without_duplicating_the_assignment() {
    let server = ScriptedServer::start(vec![text_with_usage("a"), text_with_usage("b")])
        .await
        .expect("server");
    let e = exec(&server, json!({}));
    let prior = vec![Message::user("first task"), Message::assistant("did first")];
    let mut req = RunRequest::new("second task");
    req.messages = prior.clone();
    req.reasoning_effort = Some("high".into());
    run(&e, req, None).await;
    let mut req = RunRequest::new("first task");
    req.messages = vec![
        Message::system("custom system"),
        Message::user("first task"),
    ];
    run(&e, req, None).await;
    let reqs = server.received();
    let contents = |r: &Received| -> Vec<(String, String)> {
        messages(r)
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap_or_default().to_owned(),
                    m["content"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let one = contents(&reqs[0]);
    assert_eq!(one[0].0, "system");
    assert_eq!(
        one[1..].to_vec(),
        vec![
            ("user".to_owned(), "first task".to_owned()),
            ("assistant".to_owned(), "did first".to_owned()),
            ("user".to_owned(), "second task".to_owned())
        ]
    );
    assert_eq!(reqs[0].body["reasoning_effort"], "high");
    assert_eq!(
        contents(&reqs[1]),
        vec![
            ("system".to_owned(), "custom system".to_owned()),
            ("user".to_owned(), "first task".to_owned())
        ]
    );
}

#[tokio::test]
async fn max_rounds_ends_the_run_with_an_error() {
    let ws = tempfile::tempdir().expect("tempdir");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[("a", "list_dir", json!({}))]),
        Reply::tool_calls(&[("b", "list_dir", json!({}))]),
    ])
    .await
    .expect("server");
    let e = exec(
        &server,
        json!({"workspace": ws.path(), "limits": {"max_rounds": 2}}),
    );
    let (out, _) = run(&e, RunRequest::new("loop"), None).await;
    assert_eq!(out.status, TerminalStatus::Error);
    assert!(out
        .error
        .unwrap_or_default()
        .contains("reached limits.max_rounds (2)"));
}

#[tokio::test]
async fn disabled_tools_are_hidden_and_refused() {
    let ws = tempfile::tempdir().expect("tempdir");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[("a", "run_command", json!({"command": "touch ran"}))]),
        text_with_usage("ok"),
    ])
    .await
    .expect("server");
    let e = exec(
        &server,
        json!({"workspace": ws.path(), "disabled_tools": ["run_command", "write_file"]}),
    );
    let (out, events) = run(&e, RunRequest::new("x"), None).await;
    assert_eq!(out.status, TerminalStatus::Completed);
    assert_eq!(
        tool_names(&server.received()[0]),
        vec!["read_file", "list_dir"]
    );
    assert!(!ws.path().join("ran").exists());
    assert!(events.iter().any(
        |e| matches!(e, AgentEvent::ToolError { error, .. } if error.contains("unknown tool"))
    ));
}

#[tokio::test]
async fn nested_spawn_goes_through_the_host() {
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "s",
            "spawn_subagent",
            json!({"assignment": "sub task", "role": "helper"}),
        )]),
        text_with_usage("delegated"),
    ])
    .await
    .expect("server");
    let e = exec(&server, json!({"capabilities": {"nested_spawn": true}}));
    let host = ScriptedHost::new(true);
    let (out, events) = run(
        &e,
        RunRequest::new("delegate"),
        Some(host.clone() as Arc<dyn HostBridge>),
    )
    .await;
    assert_eq!(out.result.as_deref(), Some("delegated"));
    assert_eq!(tool_names(&server.received()[0]), vec!["spawn_subagent"]);
    let spawns = host.spawns.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(
        spawns,
        vec![json!({"assignment": "sub task", "role": "helper"})]
    );
    assert!(events.iter().any(
        |e| matches!(e, AgentEvent::ToolComplete { result, .. } if result == "spawned: sub task")
    ));
}

#[tokio::test]
async fn missing_model_or_credential_is_a_clear_run_error() {
    let mut s = spec("http://127.0.0.1:9/v1", json!({}));
    s.model = None;
    let (out, _) = run(&LlmExecutor::from_spec(&s), RunRequest::new("x"), None).await;
    assert!(out.error.unwrap_or_default().contains("needs a model"));
    let mut s = spec("http://127.0.0.1:9/v1", json!({}));
    s.secrets.provider_credentials.clear();
    let (out, _) = run(&LlmExecutor::from_spec(&s), RunRequest::new("x"), None).await;
    let err = out.error.unwrap_or_default();
    assert!(
        err.contains("no credential for provider \"openai\"")
            && err.contains("secrets.provider_credentials"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_server_names_the_provider_and_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    drop(listener);
    let (out, _) = run(
        &LlmExecutor::from_spec(&spec(&url, json!({}))),
        RunRequest::new("x"),
        None,
    )
    .await;
    let err = out.error.unwrap_or_default();
    assert!(
        err.contains("could not reach openai at") && err.contains("check base_url"),
        "{err}"
    );
}

#[tokio::test]
async fn a_guardian_reviewer_reads_but_never_writes() {
    let ws = tempfile::tempdir().expect("tempdir");
    std::fs::write(ws.path().join("a.txt"), "content").expect("seed file");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[
            ("c1", "run_command", json!({"command": "cat a.txt"})),
            ("c2", "run_command", json!({"command": "echo x > b.txt"})),
        ]),
        text_with_usage("reviewed"),
    ])
    .await
    .expect("server");
    let e = exec(
        &server,
        json!({"workspace": ws.path(), "capabilities": {"guardian_read_only": true}}),
    );
    let (out, events) = run(&e, RunRequest::new("review"), None).await;
    assert_eq!(out.status, TerminalStatus::Completed);
    assert!(!ws.path().join("b.txt").exists(), "a write ran");
    let results: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolComplete { result, .. } => Some(result.clone()),
            AgentEvent::ToolError { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert!(results.iter().any(|r| r.contains("content")), "{results:?}");
    assert!(
        results.iter().any(|r| r.contains("read-only")),
        "{results:?}"
    );
    let offered = tool_names(&server.received()[0]);
    assert!(!offered.contains(&"write_file".to_owned()), "{offered:?}");
}

/// A prior transcript of `turns` long assistant/user exchanges after the
/// system prompt and before the assignment.
fn long_history(turns: usize) -> Vec<Message> {
    let mut v = vec![Message::system("You are the child.")];
    for i in 0..turns {
        v.push(Message::user(format!("question {i} {}", "q".repeat(600))));
        v.push(Message::assistant(format!(
            "answer {i} {}",
            "a".repeat(600)
        )));
    }
    v
}

/// The prompt of a request as the executor estimates it.
fn estimated(req: &Received) -> u64 {
    messages(req)
        .iter()
        .map(|m| {
            let content = m["content"].as_str().unwrap_or_default();
            let calls = m
                .get("tool_calls")
                .map_or(0, |c| super::context::text_tokens(&c.to_string()));
            super::context::text_tokens(content) + calls + 4
        })
        .sum()
}

fn compressed_events(events: &[AgentEvent]) -> Vec<(u64, u64, u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ContextCompressed {
                before_tokens,
                after_tokens,
                target_tokens,
                method,
                ..
            } => Some((
                *before_tokens,
                *after_tokens,
                *target_tokens,
                method.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn f13_a_prompt_past_the_trigger_is_summarised_below_the_target_keeping_the_assignment() {
    let server = ScriptedServer::start(vec![
        text_with_usage("They discussed twenty questions and settled all of them."),
        text_with_usage("final answer"),
    ])
    .await
    .expect("server");
    let e = exec(&server, json!({}));
    let mut history = long_history(20);
    history.push(Message::user("THE ASSIGNMENT: count the questions"));
    let budget = bamboo_domain::TokenBudget {
        max_context_tokens: 8000,
        compression_trigger_percent: 70,
        compression_target_percent: 35,
    };
    let request = RunRequest {
        assignment: "THE ASSIGNMENT: count the questions".into(),
        messages: history,
        token_budget: Some(budget),
        ..RunRequest::default()
    };
    let (out, events) = run(&e, request, None).await;
    assert_eq!(out.result.as_deref(), Some("final answer"), "{out:?}");
    let reqs = server.received();
    assert_eq!(reqs.len(), 2, "one summary call, then the round");
    // The summary call: no tools, the old turns as its input.
    assert!(reqs[0].body.get("tools").is_none());
    assert!(messages(&reqs[0])[1]["content"]
        .as_str()
        .unwrap_or_default()
        .contains("question 10 "));
    let round = &reqs[1];
    assert!(
        estimated(round) <= budget.target_tokens(),
        "{} > {}",
        estimated(round),
        budget.target_tokens()
    );
    let texts: Vec<String> = messages(round)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts[0], "You are the child.", "the system prompt is kept");
    assert!(texts
        .iter()
        .any(|t| t == "THE ASSIGNMENT: count the questions"));
    assert!(texts.iter().any(|t| t.contains("settled all of them")));
    assert!(!texts.iter().any(|t| t.contains("question 0 ")));
    let compressed = compressed_events(&events);
    assert_eq!(compressed.len(), 1, "{events:?}");
    let (before, after, target, method) = &compressed[0];
    assert!(
        *before > budget.trigger_tokens() && after <= target,
        "{compressed:?}"
    );
    assert_eq!(method, "summary");
    // The transcript handed back is the compressed one.
    let transcript = out.transcript.unwrap_or_default();
    assert!(transcript.len() < 42 / 2, "{}", transcript.len());
    assert!(transcript
        .iter()
        .any(|m| m.content.contains("settled all of them")));
}

#[tokio::test]
async fn f13_when_the_model_cannot_summarise_older_turns_are_cut_with_a_marker() {
    let server = ScriptedServer::start(vec![Reply::status(400), text_with_usage("done")])
        .await
        .expect("server");
    let e = exec(&server, json!({}));
    let budget = bamboo_domain::TokenBudget {
        max_context_tokens: 8000,
        compression_trigger_percent: 70,
        compression_target_percent: 35,
    };
    let request = RunRequest {
        assignment: "go".into(),
        messages: long_history(20),
        token_budget: Some(budget),
        ..RunRequest::default()
    };
    let (out, events) = run(&e, request, None).await;
    assert_eq!(out.result.as_deref(), Some("done"), "{out:?}");
    let round = server.received().pop().expect("a round");
    assert!(estimated(&round) <= budget.target_tokens());
    let texts: Vec<String> = messages(&round)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("earlier messages were cut")),
        "{texts:?}"
    );
    assert_eq!(texts.last().map(String::as_str), Some("go"));
    assert_eq!(compressed_events(&events)[0].3, "truncated");
}

#[tokio::test]
async fn f14_the_task_list_is_shown_and_the_task_list_tool_changes_it() {
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[("t1", "task_list", json!({"id": "1", "status": "completed"}))]),
        text_with_usage("done"),
    ])
    .await
    .expect("server");
    let e = exec(&server, json!({}));
    let list = bamboo_domain::TaskList {
        items: vec![bamboo_domain::TaskItem {
            id: "1".into(),
            description: "read the code".into(),
            status: bamboo_domain::TaskItemStatus::InProgress,
        }],
    };
    let request = RunRequest {
        assignment: "work".into(),
        task_list: Some(list),
        ..RunRequest::default()
    };
    let (out, events) = run(&e, request, None).await;
    assert_eq!(out.result.as_deref(), Some("done"), "{out:?}");
    let reqs = server.received();
    assert_eq!(tool_names(&reqs[0]), vec!["task_list"]);
    let shown = |r: &Received| {
        messages(r).iter().any(|m| {
            m["role"] == "system"
                && m["content"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("- [completed] 1: read the code")
        })
    };
    assert!(messages(&reqs[0]).iter().any(|m| m["content"]
        .as_str()
        .unwrap_or_default()
        .contains("- [in_progress] 1: read the code")));
    assert!(shown(&reqs[1]), "the next round shows the changed list");
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::TaskListUpdated { task_list } if task_list.items[0].status == bamboo_domain::TaskItemStatus::Completed
    )));
}

#[tokio::test]
async fn f15_a_read_only_childs_write_file_is_refused_and_nothing_is_written() {
    let ws = tempfile::tempdir().expect("tempdir");
    let server = ScriptedServer::start(vec![
        Reply::tool_calls(&[(
            "w",
            "write_file",
            json!({"path": "out.txt", "content": "x"}),
        )]),
        text_with_usage("ok"),
    ])
    .await
    .expect("server");
    let e = exec(
        &server,
        json!({"workspace": ws.path(), "capabilities": {"guardian_read_only": true}}),
    );
    let (out, events) = run(&e, RunRequest::new("write it"), None).await;
    assert_eq!(out.status, TerminalStatus::Completed);
    assert!(!ws.path().join("out.txt").exists(), "a write ran");
    assert!(
        events.iter().any(|e| matches!(
            e,
            AgentEvent::ToolError { tool_name, error, .. }
                if tool_name == "write_file" && error.contains("read-only") && error.starts_with("denied")
        )),
        "{events:?}"
    );
}

#[tokio::test]
async fn f13_an_assignment_larger_than_the_budget_is_sent_as_it_is_without_summary_calls() {
    let server = ScriptedServer::start(vec![text_with_usage("ok")])
        .await
        .expect("server");
    let e = exec(&server, json!({}));
    let request = RunRequest {
        assignment: "z".repeat(4000),
        token_budget: Some(bamboo_domain::TokenBudget {
            max_context_tokens: 500,
            compression_trigger_percent: 70,
            compression_target_percent: 35,
        }),
        ..RunRequest::default()
    };
    let (out, events) = run(&e, request, None).await;
    assert_eq!(out.result.as_deref(), Some("ok"), "{out:?}");
    assert_eq!(
        server.received().len(),
        1,
        "no summary call for nothing to fold"
    );
    assert!(compressed_events(&events).is_empty());
}
