//! Coding agents as children (issue 20): the real Claude Code binary driven
//! by real worker processes, through the `run` front door and through the
//! engine, against a scripted Anthropic Messages server (the only mock).
//! The binary is `BAMBOO_CLAUDE_BIN` (`cargo xtask e2e` finds or installs
//! it); without it these tests fail, they never skip.

#![allow(clippy::unwrap_used)]

mod engine_support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bamboo_domain::{CompletionStatus, ModelRef};
use bamboo_engine::CredentialResolver;
use bamboo_engine::{CreateChild, Engine, SendMessage, Since};
use bamboo_subagent::spec::{ClaudeCodeSpec, ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;
use bamboo_testkit::{Reply, ScriptedServer};
use engine_support::{completion, SOON};
use futures::StreamExt;
use serde_json::{json, Value};

/// The key the scripted server expects; it must reach the agent only in
/// its own environment.
const KEY: &str = "sk-ant-test-issue20";

/// The real Claude Code binary.
fn claude_bin() -> PathBuf {
    let p = std::env::var_os("BAMBOO_CLAUDE_BIN").map(PathBuf::from).expect(
        "BAMBOO_CLAUDE_BIN is not set: run `cargo xtask e2e` (it finds or installs Claude Code), or set it to a claude binary",
    );
    assert!(
        p.is_file(),
        "BAMBOO_CLAUDE_BIN={} is not a file",
        p.display()
    );
    p
}

/// `bamboo-worker run --executor claude` against `server`, in `ws`.
fn front_door(server: &ScriptedServer, ws: &Path, tmp: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bamboo_e2e::worker_bin());
    cmd.arg("run")
        .args(["--executor", "claude", "--agent-bin"])
        .arg(claude_bin())
        .args(["--model", "claude-test", "--base-url", &server.base_url])
        .arg("--workspace")
        .arg(ws)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The child events of a `--json` run, unwrapped.
fn child_events(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["event"]["type"] == "sub_agent_event")
        .map(|l| l["event"]["event"].clone())
        .collect()
}

/// Whether any request the model got carries `needle` in its body.
fn model_saw(server: &ScriptedServer, needle: &str) -> bool {
    server
        .received()
        .iter()
        .any(|r| r.body.to_string().contains(needle))
}

/// Issue 20 (2, 3), F18, F20, C14: through the front door, Claude Code's text, its Bash
/// call with the command and the result come as events, its usage and cost
/// reach `--json`; the key reached the agent (the model got it) and never
/// its argv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_text_and_a_bash_call_with_its_result_and_usage_through_the_front_door() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::anthropic_tool_use(
            "toolu_1",
            "Bash",
            json!({"command": "echo bash-said-hi", "description": "say hi"}),
        ),
        Reply::anthropic_text("all done here", 40, 9),
    ])
    .await
    .unwrap();
    let out = front_door(&server, ws.path(), tmp.path())
        .args(["--approve", "all", "--json", "say hi with bash"])
        .output()
        .await
        .unwrap();
    let lines = json_lines(&out.stdout);
    assert!(
        out.status.success(),
        "{lines:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = child_events(&lines);
    let start = events
        .iter()
        .find(|e| e["type"] == "tool_start")
        .expect("tool_start");
    assert_eq!(start["tool_name"], "Bash");
    assert_eq!(start["arguments"]["command"], "echo bash-said-hi");
    let done = events
        .iter()
        .find(|e| e["type"] == "tool_complete")
        .expect("tool_complete");
    assert_eq!(done["tool_call_id"], "toolu_1");
    assert!(
        done["result"].as_str().unwrap().contains("bash-said-hi"),
        "{done}"
    );
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .filter_map(|e| e["content"].as_str())
        .collect();
    assert_eq!(text, "all done here");
    let usage = &events
        .iter()
        .find(|e| e["type"] == "complete")
        .expect("complete")["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() >= 40, "{usage}");
    assert!(usage["cost_usd"].as_f64().unwrap() > 0.0, "{usage}");
    assert_eq!(usage["tool_calls"], 1);
    assert_eq!(usage["turns"], 2);
    let completed = lines
        .iter()
        .find(|l| l["event"]["type"] == "sub_agent_completed")
        .expect("sub_agent_completed");
    assert_eq!(completed["event"]["usage"], *usage, "{completed}");
    let summary = lines.iter().find(|l| l["kind"] == "summary").unwrap();
    assert_eq!(summary["children"][0]["result"], "all done here");
    assert_eq!(summary["children"][0]["usage"], *usage, "{summary}");
    assert_eq!(summary["usage"], *usage, "the root's total: {summary}");
    let req = &server.received()[0];
    assert!(
        req.request_line.starts_with("POST /v1/messages"),
        "{}",
        req.request_line
    );
    assert!(
        req.headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == KEY),
        "the agent's own key reached the model"
    );
}

/// Issue 20 (2), F18: with `--approve none` Claude Code's permission question is
/// denied: the file is not created, and the child still completes with the
/// denial in what its model was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_permission_question_leaves_no_file_and_the_denial_reaches_the_model() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::anthropic_tool_use(
            "toolu_1",
            "Bash",
            json!({"command": "touch denied.txt", "description": "make a file"}),
        ),
        Reply::anthropic_text("could not", 10, 2),
    ])
    .await
    .unwrap();
    let out = front_door(&server, ws.path(), tmp.path())
        .args(["--approve", "none", "--json", "make a file"])
        .output()
        .await
        .unwrap();
    let lines = json_lines(&out.stdout);
    assert!(out.status.success(), "{lines:?}");
    assert!(!ws.path().join("denied.txt").exists());
    let summary = lines.iter().find(|l| l["kind"] == "summary").unwrap();
    assert_eq!(summary["children"][0]["status"], "completed");
    assert!(
        model_saw(&server, "did not allow this action"),
        "the denial is in the transcript: {:?}",
        server.received().last().map(|r| r.body.to_string())
    );
}

/// Issue 20 (2), F18, on a pseudo-terminal (`script`): Claude Code's permission
/// question becomes the front door's prompt; `y` lets the Bash call run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_agents_question_is_prompted_and_y_lets_it_run() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::anthropic_tool_use(
            "toolu_1",
            "Bash",
            json!({"command": "touch allowed.txt", "description": "make a file"}),
        ),
        Reply::anthropic_text("made it", 10, 2),
    ])
    .await
    .unwrap();
    let line = format!(
        "{} run --name maker --executor claude --agent-bin {} --model claude-test --base-url {} --workspace {} 'make a file'",
        bamboo_e2e::worker_bin().display(),
        claude_bin().display(),
        server.base_url,
        ws.path().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("ANTHROPIC_API_KEY", KEY)
        .env("TMPDIR", tmp.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let read_until = |needle: &str, seen: &mut Vec<u8>| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !String::from_utf8_lossy(seen).contains(needle) {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(bytes) => seen.extend(bytes),
                    Err(_) => panic!(
                        "never saw {needle:?} in:\n{}",
                        String::from_utf8_lossy(seen)
                    ),
                }
            }
        };
        read_until("[y/n/a/N]", &mut seen);
        stdin.write_all(b"y\n").unwrap();
        stdin.flush().unwrap();
        read_until("completed in", &mut seen);
        let status = child.wait().unwrap();
        drop(stdin);
        (status, String::from_utf8_lossy(&seen).into_owned())
    })
    .await
    .unwrap();
    let (status, text) = seen;
    assert!(status.success(), "{text}");
    assert!(text.contains("[maker] asks to use Bash"), "{text}");
    assert!(text.contains("touch allowed.txt"), "{text}");
    assert!(ws.path().join("allowed.txt").exists(), "{text}");
}

/// Hands out the scripted server's Anthropic credential.
#[derive(Debug)]
struct Anthropic(String);

impl CredentialResolver for Anthropic {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        (provider == "anthropic").then(|| ProviderCredential {
            provider: "anthropic".into(),
            api_key: Secret::new(KEY),
            base_url: Some(self.0.clone()),
            provider_type: Some("anthropic".into()),
        })
    }
}

/// An engine whose children run Claude Code (through `agent_bin`) against
/// `server`, with humans answering approvals through the engine.
async fn claude_engine(dir: &Path, server: &ScriptedServer, agent_bin: &Path) -> Engine {
    engine_support::builder(dir, 2)
        .executor(ExecutorSpec::ClaudeCode(ClaudeCodeSpec {
            binary: Some(agent_bin.display().to_string()),
            ..ClaudeCodeSpec::default()
        }))
        .credentials(Arc::new(Anthropic(server.base_url.clone())))
        .enforce_permissions(true)
        .build()
        .await
        .unwrap()
}

async fn root_and_child(engine: &Engine, ws: &Path, assignment: &str) -> (String, String) {
    let model = ModelRef {
        provider: "anthropic".into(),
        model: "claude-test".into(),
    };
    let root = engine.create_root("root", Some(model)).await.unwrap();
    let mut input = CreateChild::new(&root.id, assignment);
    input.workspace = Some(ws.display().to_string());
    let child = engine.create_child(input).await.unwrap();
    (root.id, child.id)
}

/// Claude Code processes whose working directory is `ws`.
fn agents_in(ws: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        if String::from_utf8_lossy(&cmdline).contains("--permission-prompt-tool")
            && cwd.as_deref() == Some(ws)
        {
            found.push(pid);
        }
    }
    found
}

/// Issue 20 (2), F18, E17: an agent's permission question reaches the embedding
/// root's `approval_requests` (tool, command, the asking child), and the
/// answer given there lets the command run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_question_reaches_the_embedders_approval_requests_and_its_answer_counts() {
    let (dir, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::anthropic_tool_use(
            "toolu_1",
            "Bash",
            json!({"command": "touch relayed.txt", "description": "make a file"}),
        ),
        Reply::anthropic_text("ok", 10, 2),
    ])
    .await
    .unwrap();
    let engine = claude_engine(dir.path(), &server, &claude_bin()).await;
    let (root, child) = root_and_child(&engine, ws.path(), "make a file").await;
    let mut approvals = engine.approval_requests(Some(&root));
    let mut rx = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let asked = tokio::time::timeout(SOON, approvals.next())
        .await
        .expect("a question in time")
        .unwrap();
    assert_eq!(asked.child_session_id, child);
    assert_eq!(asked.tool_name, "Bash");
    assert_eq!(asked.resource, "touch relayed.txt");
    assert!(asked.ancestry.contains(&root));
    engine.answer_approval(&asked.id, true).unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    assert!(ws.path().join("relayed.txt").exists());
    engine.shutdown().await;
}

/// Issue 20 (2), F18, C6: a steering message sent while the agent waits on its
/// model is in the model's next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steering_message_reaches_the_model_in_its_next_request() {
    let (dir, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::anthropic_text("first answer", 10, 2).after(Duration::from_secs(3)),
        Reply::anthropic_text("second answer", 10, 2),
    ])
    .await
    .unwrap();
    let engine = claude_engine(dir.path(), &server, &claude_bin()).await;
    let (root, child) = root_and_child(&engine, ws.path(), "start").await;
    let mut rx = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    assert!(server.wait_for_requests(1, SOON).await);
    engine
        .send_message(
            &root,
            &child,
            SendMessage::new("STEER-also-check-the-tests"),
        )
        .await
        .unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(!received[0]
        .body
        .to_string()
        .contains("STEER-also-check-the-tests"));
    assert!(received[1]
        .body
        .to_string()
        .contains("STEER-also-check-the-tests"));
    engine.shutdown().await;
}

/// Issue 20 (2), F18, E19: cancelling a child while its agent waits on the model
/// leaves no agent process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_leaves_no_agent_process() {
    let (dir, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut stalled = Reply::anthropic_text("never", 1, 1);
    stalled.hang = true;
    stalled.chunks.truncate(1);
    let server = ScriptedServer::start(vec![stalled]).await.unwrap();
    let engine = claude_engine(dir.path(), &server, &claude_bin()).await;
    let (root, child) = root_and_child(&engine, ws.path(), "wait forever").await;
    let mut rx = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    assert!(server.wait_for_requests(1, SOON).await);
    let ws_path = ws.path().canonicalize().unwrap();
    let agents = agents_in(&ws_path);
    assert!(!agents.is_empty(), "the agent runs in its workspace");
    let started = Instant::now();
    engine.cancel_child(&root, &child).await.unwrap();
    let (status, _) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Cancelled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agents.iter().all(|p| bamboo_e2e::process_gone(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        agents.iter().all(|p| bamboo_e2e::process_gone(*p)),
        "agent processes {agents:?} outlived the cancel"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    engine.shutdown().await;
}

/// Issue 20 (2), F18, S8: the agent's session id is kept on the child, and the
/// child's second run starts the agent with `--resume <that id>` (seen in
/// the argv a wrapper script logs) instead of replaying the transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_the_child_resumes_the_agents_session() {
    let (dir, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = dir.path().join("argv.log");
    let wrapper = dir.path().join("claude-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            claude_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let server = ScriptedServer::start(vec![
        Reply::anthropic_text("one", 10, 2),
        Reply::anthropic_text("two", 10, 2),
    ])
    .await
    .unwrap();
    let engine = claude_engine(dir.path(), &server, &wrapper).await;
    let (root, child) = root_and_child(&engine, ws.path(), "first task").await;
    let mut rx = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let session = engine.session(&child).await.unwrap().unwrap();
    let id = session.metadata["agent_session_id"]
        .as_str()
        .expect("the agent's session id is kept")
        .to_owned();
    engine
        .send_message(&root, &child, SendMessage::new("second task"))
        .await
        .unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let argv = std::fs::read_to_string(&log).unwrap();
    let runs: Vec<&str> = argv.lines().collect();
    assert_eq!(runs.len(), 2, "{argv}");
    assert!(!runs[0].contains("--resume"), "{argv}");
    assert!(runs[1].contains(&format!("--resume {id}")), "{argv}");
    assert!(!argv.contains(KEY), "the key is never in argv");
    // The resumed agent sent the earlier turn from its own session.
    let second = server.received()[1].body.to_string();
    assert!(
        second.contains("first task") && second.contains("second task"),
        "{second}"
    );
    let usage = bamboo_engine::usage::totals(&engine.session(&child).await.unwrap().unwrap());
    assert_eq!(usage.turns, 2, "{usage:?}");
    engine.shutdown().await;
}

/// `count` scripted Bash calls (`echo turn-N`), then a closing text.
fn bash_turns(count: usize) -> Vec<Reply> {
    let mut replies: Vec<Reply> = (1..=count)
        .map(|n| {
            Reply::anthropic_tool_use(
                &format!("toolu_{n}"),
                "Bash",
                json!({"command": format!("echo turn-{n}"), "description": "count"}),
            )
        })
        .collect();
    replies.push(Reply::anthropic_text("finished", 10, 2));
    replies
}

/// Issue 20 (4), C11, C12: a model that wants 5 tool turns stops at `--max-turns 2`
/// (Claude Code's own limit), and the child's error names the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_turns_stops_the_agent_and_names_the_budget() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(bash_turns(5)).await.unwrap();
    let out = front_door(&server, ws.path(), tmp.path())
        .args(["--approve", "all", "--max-turns", "2", "--json", "count"])
        .output()
        .await
        .unwrap();
    let lines = json_lines(&out.stdout);
    let summary = lines.iter().find(|l| l["kind"] == "summary").unwrap();
    let child = &summary["children"][0];
    assert_eq!(child["status"], "error", "{summary}");
    let error = child["error"].as_str().unwrap();
    assert!(error.contains("budget max_turns exceeded"), "{error}");
    assert!(error.contains("--max-turns"), "{error}");
    assert_eq!(server.received().len(), 2, "two model turns, not five");
    let starts = child_events(&lines)
        .iter()
        .filter(|e| e["type"] == "tool_start")
        .count();
    assert!(starts <= 2, "{starts} tool calls");
}

/// Issue 20 (3, 4), C12, C14: `--max-cost` cancels a child whose reported cost passes
/// it, the error naming the budget and by how much; the summary table shows
/// each child's tokens and cost and the root's total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cost_cancels_a_child_over_budget_and_the_summary_shows_usage() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![Reply::anthropic_text("pricey", 5000, 900)])
        .await
        .unwrap();
    let out = front_door(&server, ws.path(), tmp.path())
        .args(["--approve", "all", "--max-cost", "0.000001", "spend"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let header = stdout.lines().find(|l| l.starts_with("NAME")).unwrap();
    assert!(
        header.contains("TOKENS") && header.contains("COST"),
        "{stdout}"
    );
    let row = stdout.lines().find(|l| l.starts_with("spend")).unwrap();
    assert!(row.contains("cancelled") && row.contains("$0."), "{row}");
    assert!(
        stdout.contains("[spend] cancelled: budget max_cost_usd exceeded"),
        "the error names the budget: {stdout}"
    );
    assert!(stdout.contains("over its limit of $0.000001"), "{stdout}");
    assert!(
        stdout.contains("; in total ") && stdout.contains(" tokens, $"),
        "the root's total: {stdout}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with one commit (a README).
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("README"), "main checkout\n").unwrap();
    git(dir.path(), &["add", "README"]);
    git(
        dir.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    );
    dir
}

/// Issue 20 (5), C13: with `--worktree`, three Claude Code children each write
/// notes.txt (their own text: the name of their worktree) in one
/// repository: the main checkout is unchanged, three branches
/// `bamboo/<name>` each hold their own file committed by the child, and the
/// summary lists them; a fourth child that changed nothing leaves no branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktree_children_commit_on_their_own_branches_and_an_idle_one_leaves_none() {
    let (tmp, repo) = (tempfile::tempdir().unwrap(), repo());
    let write = |n: usize| {
        Reply::anthropic_tool_use(
            &format!("toolu_{n}"),
            "Bash",
            json!({"command": "basename \"$PWD\" > notes.txt", "description": "write notes"}),
        )
    };
    let server = ScriptedServer::start(vec![
        write(1),
        Reply::anthropic_text("wrote", 10, 2),
        write(2),
        Reply::anthropic_text("wrote", 10, 2),
        write(3),
        Reply::anthropic_text("wrote", 10, 2),
        Reply::anthropic_text("nothing to do", 10, 2),
    ])
    .await
    .unwrap();
    let data = tmp.path().join("data");
    let out = front_door(&server, repo.path(), tmp.path())
        .arg("--data-dir")
        .arg(&data)
        .args(["--approve", "all", "--worktree", "--max-running", "1"])
        .args([
            "--name", "alpha", "--name", "beta", "--name", "gamma", "--name", "idle",
        ])
        .args(["write notes", "write notes", "write notes", "look only"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !repo.path().join("notes.txt").exists(),
        "main checkout unchanged"
    );
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
    let branches = git(
        repo.path(),
        &["branch", "--list", "bamboo/*", "--format=%(refname:short)"],
    );
    assert_eq!(
        branches.lines().collect::<Vec<_>>(),
        ["bamboo/alpha", "bamboo/beta", "bamboo/gamma"],
        "{stdout}"
    );
    let mut texts = Vec::new();
    for b in ["alpha", "beta", "gamma"] {
        let branch = format!("bamboo/{b}");
        texts.push(git(repo.path(), &["show", &format!("{branch}:notes.txt")]));
        assert_eq!(
            git(repo.path(), &["diff", "--name-only", "main", &branch]),
            "notes.txt"
        );
        let author = git(repo.path(), &["log", "-1", "--format=%an|%s", &branch]);
        assert!(author.contains(b), "the commit names the child: {author}");
        assert!(
            stdout.contains(&format!("{b}: branch {branch} at "))
                && stdout.contains("(1 file: notes.txt)"),
            "the summary lists it: {stdout}"
        );
    }
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 3, "each branch has its own text: {texts:?}");
    assert!(
        stdout.contains("idle: changed nothing; no branch kept"),
        "{stdout}"
    );
    let worktrees = git(repo.path(), &["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count(),
        4,
        "three kept worktrees besides the main checkout: {worktrees}"
    );
    // `sessions show` reports alpha's worktree and usage; `sessions
    // remove-worktree` removes the directory and keeps the branch.
    let block = worktrees
        .split("\n\n")
        .find(|b| b.contains("refs/heads/bamboo/alpha"))
        .unwrap();
    let path = PathBuf::from(
        block
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("worktree "),
    );
    let id = path.file_name().unwrap().to_string_lossy().into_owned();
    let sessions = |args: &[&str]| {
        let out = std::process::Command::new(bamboo_e2e::worker_bin())
            .arg("sessions")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = sessions(&["show", &id]);
    assert!(
        shown.contains(&format!(
            "worktree {} on branch bamboo/alpha at ",
            path.display()
        )) && shown.contains("(notes.txt)"),
        "{shown}"
    );
    assert!(
        shown.contains("usage    ") && shown.contains("tool calls"),
        "{shown}"
    );
    let removed = sessions(&["remove-worktree", &id]);
    assert!(removed.contains("removed the worktree"), "{removed}");
    assert!(!path.exists());
    assert!(git(repo.path(), &["branch", "--list", "bamboo/alpha"]).contains("bamboo/alpha"));
    let shown = sessions(&["show", &id]);
    assert!(
        shown.contains("worktree removed; branch bamboo/alpha at "),
        "{shown}"
    );
}

/// Issue 20 (5), C13: `--worktree` in a workspace that is not in a git
/// repository is refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktree_outside_a_git_repository_is_refused() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let out = front_door(&server, ws.path(), tmp.path())
        .args(["--worktree", "write notes"])
        .output()
        .await
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("isolation worktree needs a git repository") && all.contains("git init"),
        "{all}"
    );
    assert!(server.received().is_empty(), "no agent ran");
}

/// The real Codex binary.
fn codex_bin() -> PathBuf {
    let p = std::env::var_os("BAMBOO_CODEX_BIN").map(PathBuf::from).expect(
        "BAMBOO_CODEX_BIN is not set: run `cargo xtask e2e` (it finds or installs Codex), or set it to a codex binary",
    );
    assert!(
        p.is_file(),
        "BAMBOO_CODEX_BIN={} is not a file",
        p.display()
    );
    p
}

/// Issue 20 (6), F19, F20: through the front door, a `codex exec` run's command
/// item, message and usage arrive as events (a scripted OpenAI Responses
/// server is the model); the key reaches the agent only in its own
/// environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_exec_message_command_item_and_usage_as_events() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::responses_exec("call_1", "echo codex-said-hi"),
        Reply::responses_text("codex is done", 40, 9),
    ])
    .await
    .unwrap();
    let out = tokio::process::Command::new(bamboo_e2e::worker_bin())
        .arg("run")
        .args(["--executor", "codex", "--agent-bin"])
        .arg(codex_bin())
        .args(["--model", "test-model", "--base-url", &server.base_url])
        .arg("--workspace")
        .arg(ws.path())
        .args(["--approve", "all", "--json", "say hi"])
        .env("OPENAI_API_KEY", "sk-codex-test")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let lines = json_lines(&out.stdout);
    assert!(
        out.status.success(),
        "{lines:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = child_events(&lines);
    let start = events
        .iter()
        .find(|e| e["type"] == "tool_start")
        .expect("tool_start");
    assert!(
        start["arguments"]["command"]
            .as_str()
            .unwrap()
            .contains("echo codex-said-hi"),
        "{start}"
    );
    let done = events
        .iter()
        .find(|e| e["type"] == "tool_complete")
        .expect("tool_complete");
    assert!(
        done["result"].as_str().unwrap().contains("codex-said-hi"),
        "{done}"
    );
    assert!(events
        .iter()
        .any(|e| e["type"] == "token" && e["content"] == "codex is done"));
    let usage = &events
        .iter()
        .find(|e| e["type"] == "complete")
        .expect("complete")["usage"];
    assert_eq!(usage["turns"], 1, "{usage}");
    assert_eq!(usage["tool_calls"], 1, "{usage}");
    assert!(usage["total_tokens"].as_u64().unwrap() >= 49, "{usage}");
    let summary = lines.iter().find(|l| l["kind"] == "summary").unwrap();
    assert_eq!(summary["children"][0]["result"], "codex is done");
    assert!(server.received()[0]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer sk-codex-test"));
}

/// Hands out the scripted server's OpenAI credential.
#[derive(Debug)]
struct OpenAi(String);

impl CredentialResolver for OpenAi {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        (provider == "openai").then(|| ProviderCredential {
            provider: "openai".into(),
            api_key: Secret::new("sk-codex-test"),
            base_url: Some(self.0.clone()),
            provider_type: Some("openai".into()),
        })
    }
}

/// Issue 20 (6), F19, E17: in `app_server` mode Codex's approval request
/// for a command reaches the embedding root's `approval_requests`; the
/// answer given there lets the command run, and the run completes with
/// its message and usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_app_server_relays_an_approval_and_its_answer_counts() {
    use bamboo_subagent::spec::{CodexMode, CodexSpec};
    let (dir, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::responses_exec("call_1", "echo hi > approved.txt"),
        Reply::responses_text("made it", 30, 5),
    ])
    .await
    .unwrap();
    let engine = engine_support::builder(dir.path(), 2)
        .executor(ExecutorSpec::Codex(CodexSpec {
            binary: Some(codex_bin().display().to_string()),
            mode: Some(CodexMode::AppServer),
            sandbox: Some("workspace-write".into()),
            approval_policy: Some("untrusted".into()),
            ..CodexSpec::default()
        }))
        .credentials(Arc::new(OpenAi(server.base_url.clone())))
        .enforce_permissions(true)
        .build()
        .await
        .unwrap();
    let model = ModelRef {
        provider: "openai".into(),
        model: "test-model".into(),
    };
    let root = engine.create_root("root", Some(model)).await.unwrap();
    let mut input = CreateChild::new(&root.id, "make a file");
    input.workspace = Some(ws.path().display().to_string());
    let child = engine.create_child(input).await.unwrap().id;
    let mut approvals = engine.approval_requests(Some(&root.id));
    let mut rx = engine.events(&root.id, Since::Now);
    engine.run_child(&root.id, &child, true).await.unwrap();
    let asked = tokio::select! {
        a = approvals.next() => a.unwrap(),
        done = completion(&mut rx, &child) => panic!("ended without a question: {done:?}; model requests: {}", server.received().len()),
    };
    assert_eq!(asked.child_session_id, child);
    assert_eq!(asked.tool_name, "command_execution");
    assert!(
        asked.resource.contains("echo hi > approved.txt"),
        "{asked:?}"
    );
    engine.answer_approval(&asked.id, true).unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    assert!(ws.path().join("approved.txt").exists());
    let detail = engine.get_child(&root.id, &child).await.unwrap();
    assert_eq!(detail.last_result.as_deref(), Some("made it"));
    let usage = detail.usage.expect("usage kept on the child");
    assert_eq!((usage.turns, usage.tool_calls), (1, 1), "{usage:?}");
    engine.shutdown().await;
}

/// Issue 20 (2), F18, E17: a Claude Code grandchild's permission question
/// reaches the embedding root's `approval_requests` with its whole
/// ancestry, and a denial there keeps its command from running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchilds_question_reaches_the_embedding_roots_approval_requests() {
    let (dir, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![
        Reply::anthropic_tool_use(
            "toolu_1",
            "Bash",
            json!({"command": "touch grandchild.txt", "description": "make a file"}),
        ),
        Reply::anthropic_text("was refused", 10, 2),
    ])
    .await
    .unwrap();
    let engine = claude_engine(dir.path(), &server, &claude_bin()).await;
    let (root, child) = root_and_child(&engine, ws.path(), "coordinate").await;
    let grandchild = engine
        .create_child(CreateChild::new(&child, "make a file"))
        .await
        .unwrap()
        .id;
    let mut approvals = engine.approval_requests(Some(&root));
    let mut rx = engine.events(&child, Since::Now);
    engine.run_child(&child, &grandchild, true).await.unwrap();
    let asked = tokio::time::timeout(SOON, approvals.next())
        .await
        .expect("a question in time")
        .unwrap();
    assert_eq!(asked.child_session_id, grandchild);
    assert_eq!(asked.ancestry, vec![child.clone(), root.clone()]);
    assert_eq!(asked.resource, "touch grandchild.txt");
    engine.answer_approval(&asked.id, false).unwrap();
    let (status, error) = completion(&mut rx, &grandchild).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    assert!(!ws.path().join("grandchild.txt").exists());
    assert!(model_saw(&server, "did not allow this action"));
    engine.shutdown().await;
}

/// Issue 20 (4), C12: `--max-tokens` cancels a child whose usage passes it,
/// the error naming the budget and by how much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_cancels_a_child_over_budget() {
    let (tmp, ws) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = ScriptedServer::start(vec![Reply::anthropic_text("wordy", 5000, 900)])
        .await
        .unwrap();
    let out = front_door(&server, ws.path(), tmp.path())
        .args(["--approve", "all", "--max-tokens", "100", "--json", "talk"])
        .output()
        .await
        .unwrap();
    let lines = json_lines(&out.stdout);
    assert!(!out.status.success(), "{lines:?}");
    let child = &lines.iter().find(|l| l["kind"] == "summary").unwrap()["children"][0];
    assert_eq!(child["status"], "cancelled", "{child}");
    let error = child["error"].as_str().unwrap();
    assert!(
        error.contains("budget max_tokens exceeded") && error.contains("over its limit of 100"),
        "{error}"
    );
}

/// Issue 20 (5), C13: a resumed worktree child works in the same worktree:
/// its second run's change is a second commit on the same branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_worktree_child_reuses_its_worktree() {
    let (dir, repo) = (tempfile::tempdir().unwrap(), repo());
    let write = |n: usize, text: &str| {
        Reply::anthropic_tool_use(
            &format!("toolu_{n}"),
            "Bash",
            json!({"command": format!("echo {text} >> notes.txt"), "description": "write"}),
        )
    };
    let server = ScriptedServer::start(vec![
        write(1, "first"),
        Reply::anthropic_text("one", 10, 2),
        write(2, "second"),
        Reply::anthropic_text("two", 10, 2),
    ])
    .await
    .unwrap();
    let engine = engine_support::builder(dir.path(), 2)
        .executor(ExecutorSpec::ClaudeCode(ClaudeCodeSpec {
            binary: Some(claude_bin().display().to_string()),
            permission_mode: Some("acceptEdits".into()),
            ..ClaudeCodeSpec::default()
        }))
        .credentials(Arc::new(Anthropic(server.base_url.clone())))
        .enforce_permissions(false)
        .build()
        .await
        .unwrap();
    let model = ModelRef {
        provider: "anthropic".into(),
        model: "claude-test".into(),
    };
    let root = engine.create_root("root", Some(model)).await.unwrap().id;
    let mut input = CreateChild::new(&root, "write notes");
    input.title = Some("scribe".into());
    input.workspace = Some(repo.path().display().to_string());
    input.isolation = Some(bamboo_engine::worktree::Isolation::Worktree);
    let child = engine.create_child(input).await.unwrap().id;
    let mut rx = engine.events(&root, Since::Now);
    engine.run_child(&root, &child, true).await.unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let first = engine
        .get_child(&root, &child)
        .await
        .unwrap()
        .worktree
        .unwrap();
    engine
        .send_message(&root, &child, SendMessage::new("write more"))
        .await
        .unwrap();
    let (status, error) = completion(&mut rx, &child).await;
    assert_eq!(status, CompletionStatus::Completed, "{error:?}");
    let second = engine
        .get_child(&root, &child)
        .await
        .unwrap()
        .worktree
        .unwrap();
    assert_eq!((&second.path, &second.branch), (&first.path, &first.branch));
    assert_ne!(second.commit, first.commit);
    assert_eq!(
        git(repo.path(), &["rev-list", "--count", "main..bamboo/scribe"]),
        "2"
    );
    assert_eq!(
        git(repo.path(), &["show", "bamboo/scribe:notes.txt"]),
        "first\nsecond"
    );
    // The SubAgent tool's `get` and `list` carry the extras too (C14).
    let got = bamboo_engine::tool::call(
        &engine,
        &root,
        json!({"action": "get", "child_session_id": child}),
    )
    .await;
    assert_eq!(
        got["result"]["worktree"]["branch"], "bamboo/scribe",
        "{got}"
    );
    assert_eq!(got["result"]["worktree"]["files"], json!(["notes.txt"]));
    assert_eq!(got["result"]["usage"]["turns"], 4, "{got}");
    let listed = bamboo_engine::tool::call(&engine, &root, json!({"action": "list"})).await;
    assert_eq!(
        listed["result"]["children"][0]["usage"]["tool_calls"], 2,
        "{listed}"
    );
    engine.shutdown().await;
}
