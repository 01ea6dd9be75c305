//! Tests of the cli_adapter executor with real child processes.

use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::{AgentEvent, TerminalStatus};
use bamboo_subagent::executor::{Executor, HostBridge, RunRequest};
use bamboo_subagent::spec::ProvisionSpec;

use super::CliExecutor;
use crate::testkit::{cancel_and_wait, drain, events_until, test_run, tokens, ScriptedHost};

const LIMIT: Duration = Duration::from_secs(20);

fn spec(extra: serde_json::Value) -> ProvisionSpec {
    let mut v = serde_json::json!({
        "version": 1,
        "identity": {"child_id": "c1"},
        "executor": {"kind": "cli_adapter", "command": "sh", "args": []},
        "fabric_dir": "/tmp/unused-fabric",
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in more {
            base.insert(k.clone(), val.clone());
        }
    }
    ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("test spec")
}

/// A spec running `sh -c <script> sh <args...>`.
fn sh(script: &str, args: &[&str], extra: serde_json::Value) -> CliExecutor {
    let mut argv = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut extra = extra;
    if let Some(o) = extra.as_object_mut() {
        o.insert(
            "executor".into(),
            serde_json::json!({"kind": "cli_adapter", "command": "sh", "args": argv}),
        );
    }
    CliExecutor::from_spec(&spec(extra)).expect("cli executor")
}

#[tokio::test]
async fn stdout_lines_stream_as_tokens_and_json_events_before_exit() {
    let ws = tempfile::tempdir().expect("tempdir");
    let script = r#"echo first
printf '{"type":"tool_start","tool_call_id":"t1","tool_name":"grep"}\n'
printf '{"type":"reasoning_token","content":"hmm"}\n'
while [ ! -f go ]; do sleep 0.01; done
echo second"#;
    let exec = sh(script, &[], serde_json::json!({"workspace": ws.path()}));
    let mut t = test_run(None);
    let run = tokio::spawn(async move { exec.run(RunRequest::new("x"), t.ctx).await });
    let early = events_until(&mut t.events, LIMIT, |e| {
        e.type_name() == Some("reasoning_token")
    })
    .await;
    assert_eq!(early.len(), 3, "{early:?}");
    assert_eq!(early[0], AgentEvent::token("first\n"));
    assert!(matches!(&early[1], AgentEvent::ToolStart { tool_name, .. } if tool_name == "grep"));
    assert!(matches!(&early[2], AgentEvent::Unknown(v) if v["content"] == "hmm"));
    // The program is still running (waiting for `go`): these arrived while it ran.
    assert!(!run.is_finished());
    std::fs::write(ws.path().join("go"), "").expect("write go");
    let out = tokio::time::timeout(LIMIT, run)
        .await
        .expect("run ends")
        .expect("join");
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    let rest = drain(&mut t.events);
    assert_eq!(
        rest,
        vec![
            AgentEvent::token("second\n"),
            AgentEvent::Complete { usage: None }
        ]
    );
    let result = out.result.unwrap_or_default();
    assert!(
        result.starts_with("first\n{\"type\":\"tool_start\"") && result.ends_with("second\n"),
        "{result}"
    );
}

#[tokio::test]
async fn result_line_sets_the_result() {
    let exec = sh(
        r#"echo working; printf '{"type":"result","result":"the answer","cost":1}\n'"#,
        &[],
        serde_json::json!({}),
    );
    let mut t = test_run(None);
    let out = exec.run(RunRequest::new("q"), t.ctx).await;
    assert_eq!(out.result.as_deref(), Some("the answer"));
    let evs = drain(&mut t.events);
    assert_eq!(
        evs[1].type_name(),
        Some("result"),
        "result line passes through as an event"
    );
}

#[tokio::test]
async fn assignment_goes_to_the_placeholder_argument() {
    let exec = sh(
        r#"printf 'arg=%s\n' "$1"; cat"#,
        &["--task={assignment}"],
        serde_json::json!({}),
    );
    let t = test_run(None);
    let out = exec.run(RunRequest::new("fix the bug"), t.ctx).await;
    // stdin is empty (not the assignment) when the placeholder is used.
    assert_eq!(out.result.as_deref(), Some("arg=--task=fix the bug\n"));
}

#[tokio::test]
async fn assignment_goes_to_stdin_without_placeholder() {
    let exec = sh("echo got:; cat; echo", &[], serde_json::json!({}));
    let t = test_run(None);
    let out = exec.run(RunRequest::new("line one\nline two"), t.ctx).await;
    assert_eq!(out.result.as_deref(), Some("got:\nline one\nline two\n"));
}

#[tokio::test]
async fn runs_in_the_workspace() {
    let ws = tempfile::tempdir().expect("tempdir");
    let exec = sh("pwd -P", &[], serde_json::json!({"workspace": ws.path()}));
    let out = exec.run(RunRequest::new(""), test_run(None).ctx).await;
    let canon = ws.path().canonicalize().expect("canon");
    assert_eq!(
        out.result.unwrap_or_default().trim(),
        canon.to_string_lossy()
    );
}

#[tokio::test]
async fn nonzero_exit_is_an_error_with_status_and_stderr_tail() {
    let exec = sh(
        "i=0; while [ $i -lt 2000 ]; do echo noise-$i >&2; i=$((i+1)); done; echo 'fatal: bad thing' >&2; exit 3",
        &[],
        serde_json::json!({}),
    );
    let out = exec.run(RunRequest::new(""), test_run(None).ctx).await;
    assert_eq!(out.status, TerminalStatus::Error);
    let err = out.error.unwrap_or_default();
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("fatal: bad thing"), "{err}");
    assert!(!err.contains("noise-0\n"), "only the tail is kept");
    assert!(
        err.len() < super::STDERR_TAIL_BYTES + 500,
        "bounded: {}",
        err.len()
    );
}

#[tokio::test]
async fn missing_program_is_a_clear_error() {
    let s = spec(serde_json::json!({
        "executor": {"kind": "cli_adapter", "command": "no-such-agent-cli-xyz", "args": ["-p"]}
    }));
    let exec = CliExecutor::from_spec(&s).expect("exec");
    let out = tokio::time::timeout(LIMIT, exec.run(RunRequest::new("x"), test_run(None).ctx))
        .await
        .expect("no hang");
    let err = out.error.unwrap_or_default();
    assert!(
        err.contains("no-such-agent-cli-xyz") && err.contains("No such file"),
        "{err}"
    );
}

fn process_gone(pid: u32) -> bool {
    // Gone, or a zombie waiting for a reaper that is not us.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

async fn wait_gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while tokio::time::Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    // The grandchild ignores SIGTERM, so only the group SIGKILL ends it.
    let exec = sh(
        "(trap '' TERM; exec sleep 1000) & echo $!; wait",
        &[],
        serde_json::json!({}),
    );
    let mut t = test_run(None);
    let cancel = t.cancel.clone();
    let run = tokio::spawn(async move { exec.run(RunRequest::new(""), t.ctx).await });
    let evs = events_until(&mut t.events, LIMIT, |e| {
        matches!(e, AgentEvent::Token { .. })
    })
    .await;
    let pid: u32 = tokens(&evs).trim().parse().expect("grandchild pid");
    assert!(!process_gone(pid));
    let (out, took) = cancel_and_wait(&cancel, run, LIMIT).await;
    assert_eq!(out.status, TerminalStatus::Cancelled);
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    assert!(wait_gone(pid).await, "grandchild {pid} outlived the run");
}

#[tokio::test]
async fn grandchildren_do_not_outlive_a_normal_exit() {
    let exec = sh("sleep 1000 & echo $!", &[], serde_json::json!({}));
    let out = tokio::time::timeout(LIMIT, exec.run(RunRequest::new(""), test_run(None).ctx))
        .await
        .expect("does not wait for the grandchild's stdout");
    assert_eq!(out.status, TerminalStatus::Completed);
    let pid: u32 = out.result.unwrap_or_default().trim().parse().expect("pid");
    assert!(wait_gone(pid).await, "grandchild {pid} outlived the run");
}

#[tokio::test]
async fn run_timeout_ends_the_run_with_an_error() {
    let exec = sh(
        "sleep 1000",
        &[],
        serde_json::json!({"limits": {"run_timeout_secs": 1}}),
    );
    let out = tokio::time::timeout(LIMIT, exec.run(RunRequest::new(""), test_run(None).ctx))
        .await
        .expect("ends");
    assert_eq!(out.status, TerminalStatus::Error);
    let err = out.error.unwrap_or_default();
    assert!(err.contains("timed out after 1 s"), "{err}");
}

#[tokio::test]
async fn child_env_has_only_its_provider_key() {
    // A worker environment carrying secrets that must not reach the program.
    let mut base: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    for (k, v) in [
        ("ANTHROPIC_API_KEY", "leak-1"),
        ("GITHUB_TOKEN", "leak-2"),
        ("db_password", "leak-3"),
        ("OPENAI_BASE_URL", "leak-4"),
    ] {
        base.push((k.into(), v.into()));
    }
    let exec = sh(
        "env",
        &[],
        serde_json::json!({
            "model": {"provider": "openai", "model": "gpt-x"},
            "secrets": {"provider_credentials": [{"provider": "openai", "api_key": "sk-child-only"}]},
        }),
    )
    .with_base_env(base);
    assert!(!format!("{exec:?}").contains("sk-child-only"));
    let out = exec.run(RunRequest::new(""), test_run(None).ctx).await;
    let env = out.result.unwrap_or_default();
    assert!(
        env.lines().any(|l| l == "OPENAI_API_KEY=sk-child-only"),
        "{env}"
    );
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    assert!(!env.contains("leak-"), "{env}");
    let secretish: Vec<&str> = env
        .lines()
        .filter(|l| {
            let name = l.split('=').next().unwrap_or_default().to_ascii_uppercase();
            ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
                .iter()
                .any(|m| name.contains(m))
        })
        .collect();
    assert_eq!(secretish, vec!["OPENAI_API_KEY=sk-child-only"]);
}

#[tokio::test]
async fn enforce_permissions_asks_first_and_denial_stops_the_run() {
    let ws = tempfile::tempdir().expect("tempdir");
    let extra =
        serde_json::json!({"workspace": ws.path(), "capabilities": {"enforce_permissions": true}});
    let exec = sh("touch ran", &[], extra.clone());
    let host = ScriptedHost::new(false);
    let out = exec
        .run(
            RunRequest::new(""),
            test_run(Some(host.clone() as Arc<dyn HostBridge>)).ctx,
        )
        .await;
    assert_eq!(out.status, TerminalStatus::Error);
    assert!(out.error.unwrap_or_default().contains("approval denied"));
    assert!(
        !ws.path().join("ran").exists(),
        "the program must not start"
    );
    let asked = host.approvals.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].tool_name, "cli_adapter");
    assert_eq!(asked[0].permission_type, "execute");
    assert!(
        asked[0].resource.starts_with("sh -c"),
        "{}",
        asked[0].resource
    );

    // No host at all: fail closed.
    let out = exec.run(RunRequest::new(""), test_run(None).ctx).await;
    assert!(out.error.unwrap_or_default().contains("approval denied"));

    // Approved: it runs.
    let out = exec
        .run(
            RunRequest::new(""),
            test_run(Some(ScriptedHost::new(true) as Arc<dyn HostBridge>)).ctx,
        )
        .await;
    assert_eq!(out.status, TerminalStatus::Completed);
    assert!(ws.path().join("ran").exists());
}

#[tokio::test]
async fn a_command_approved_ahead_runs_without_asking_and_no_other_one_does() {
    let ws = tempfile::tempdir().expect("tempdir");
    let extra =
        serde_json::json!({"workspace": ws.path(), "capabilities": {"enforce_permissions": true}});
    let exec = sh("touch ran-$1", &["{assignment}"], extra);
    let ahead = |line: String| RunRequest {
        approved: vec![bamboo_subagent::frames::Approved {
            tool_name: "cli_adapter".into(),
            resource: line,
        }],
        ..RunRequest::new("a")
    };

    // The exact command of this run, approved ahead: it runs, nobody asked.
    let host = ScriptedHost::new(false);
    let out = exec
        .run(
            ahead(exec.command_line_for("a")),
            test_run(Some(host.clone() as Arc<dyn HostBridge>)).ctx,
        )
        .await;
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    assert!(ws.path().join("ran-a").exists());
    let asked = host.approvals.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(asked.is_empty(), "asked anyway: {asked:?}");

    // Another command line approved ahead: this run still asks (and the
    // host's no stops it).
    let host = ScriptedHost::new(false);
    let out = exec
        .run(
            ahead(exec.command_line_for("b")),
            test_run(Some(host.clone() as Arc<dyn HostBridge>)).ctx,
        )
        .await;
    assert_eq!(out.status, TerminalStatus::Error, "{out:?}");
    let asked = host.approvals.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(asked.len(), 1);
}
