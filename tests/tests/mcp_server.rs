//! `bamboo-worker mcp` (F16, issue 21) driven by the official MCP Python SDK
//! client: tools and their reference JSON, children waited for, steered and
//! cancelled, resources, and approvals answered through the `approvals`
//! tool or through an elicitation, and the streamable HTTP transport (401
//! without the bearer token; TLS on a non-loopback address). The SDK lives in a cached venv that
//! `cargo xtask e2e` / `ci` makes (`BAMBOO_MCP_PYTHON`); the scenarios are
//! in tests/mcp/client.py.

// Test code (and the shared resident-worker helpers): a panic is how a
// failure is reported.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bamboo_e2e::worker_bin;

mod remote_support;

/// A scenario runs a few children; this bounds a hung client or server.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

fn python() -> PathBuf {
    match std::env::var_os("BAMBOO_MCP_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "BAMBOO_MCP_PYTHON is not set: run the suite with `cargo xtask e2e` (it installs the MCP Python SDK in a cached venv), or point it at a python with `pip install mcp==2.3.0`"
        ),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("mcp")
        .join("client.py")
}

/// Runs one scenario of client.py against a fresh data directory.
async fn scenario(name: &str) {
    scenario_with(name, &[]).await;
}

/// Runs one scenario with extra environment variables.
async fn scenario_with(name: &str, env: &[(&str, &std::path::Path)]) {
    let data = tempfile::tempdir().expect("temp dir");
    let child = tokio::process::Command::new(python())
        .envs(env.iter().copied())
        .arg(script())
        .arg(worker_bin())
        .arg(data.path())
        .arg(name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the python client");
    let out = tokio::time::timeout(SCENARIO_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("scenario {name} did not finish in {SCENARIO_LIMIT:?}"))
        .expect("python client output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {name}")),
        "scenario {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

#[tokio::test]
async fn python_sdk_creates_waits_gets_steers_and_cancels_children() {
    scenario("children").await;
}

#[tokio::test]
async fn python_sdk_answers_an_approval_through_the_approvals_tool() {
    scenario("approvals").await;
}

#[tokio::test]
async fn python_sdk_answers_approvals_as_elicitations() {
    scenario("elicitation").await;
}

#[tokio::test]
async fn streamable_http_needs_the_bearer_token() {
    scenario("http").await;
}

#[tokio::test]
async fn streamable_http_over_tls_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = remote_support::Pki::new(dir.path());
    scenario_with(
        "https",
        &[
            ("MCP_TLS_CERT", &pki.cert),
            ("MCP_TLS_KEY", &pki.key),
            ("MCP_TLS_CA", &pki.ca_pem),
        ],
    )
    .await;
}
