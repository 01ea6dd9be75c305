//! The real Claude Code binary as the MCP client of `bamboo-worker mcp`
//! (F16, issue 21): its scripted model (a fake Anthropic Messages server on
//! loopback, the only thing mocked) creates a child through the SubAgent
//! tool, waits for it with `wait`, and ends with the child's result in its
//! final text; a second test does the same with Claude Code as the child too.
//! `cargo xtask e2e` / `ci` installs Claude Code from npm into a
//! cache (`BAMBOO_CLAUDE_BIN`); the script is tests/mcp/claude_client.py.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bamboo_e2e::worker_bin;

/// Claude starts, connects the server and makes three model calls.
const LIMIT: Duration = Duration::from_secs(180);

fn from_env(name: &str, what: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{name} is not set: run the suite with `cargo xtask e2e` (it installs {what} in ~/.cache/bamboo-fleet), or point {name} at one"
        ),
    }
}

#[tokio::test]
async fn claude_code_creates_a_child_waits_and_reports_its_result() {
    drive_claude("echo").await;
}

/// The same with a Claude Code child under the Claude Code parent (the
/// agent-CLI executor of issue 20), both on the scripted server.
#[tokio::test]
async fn a_claude_code_child_under_a_claude_code_parent() {
    drive_claude("claude").await;
}

async fn drive_claude(children: &str) {
    let python = from_env("BAMBOO_MCP_PYTHON", "the MCP Python SDK venv");
    let claude = from_env("BAMBOO_CLAUDE_BIN", "Claude Code");
    let work = tempfile::tempdir().expect("temp dir");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("mcp")
        .join("claude_client.py");
    let child = tokio::process::Command::new(python)
        .arg(script)
        .arg(claude)
        .arg(worker_bin())
        .arg(work.path())
        .arg(children)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the claude driver");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("claude did not finish in {LIMIT:?}"))
        .expect("driver output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ok claude"),
        "claude as MCP client failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}
