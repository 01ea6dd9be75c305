//! The real Claude Code binary as the MCP client of `bamboo-worker mcp`
//! (F16, issue 21): its scripted model (a fake Anthropic Messages server on
//! loopback, the only thing mocked) creates a child through the SubAgent
//! tool, waits for it with `wait`, and ends with the child's result in its
//! final text; a second test does the same with Claude Code as the child too.
//! `cargo xtask e2e` / `ci` installs Claude Code from npm into a
//! cache (`BAMBOO_CLAUDE_BIN`); the script is tests/mcp/claude_client.py.

use std::time::Duration;

use bamboo_e2e::tools::{claude_bin, run_mcp_driver};
use bamboo_e2e::worker_bin;

/// Claude starts, connects the server and makes three model calls.
const LIMIT: Duration = Duration::from_secs(180);

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
    let work = tempfile::tempdir().expect("temp dir");
    let (claude, worker) = (claude_bin(), worker_bin());
    let args = [
        claude.as_os_str(),
        worker.as_os_str(),
        work.path().as_os_str(),
        children.as_ref(),
    ];
    run_mcp_driver("claude_client.py", &args, &[], LIMIT, "claude").await;
}
