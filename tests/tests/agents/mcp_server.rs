//! `bamboo-worker mcp` (F16, issue 21) driven by the official MCP Python SDK
//! client: tools and their reference JSON, children waited for, steered and
//! cancelled, resources, and approvals answered through the `approvals`
//! tool or through an elicitation, and the streamable HTTP transport (401
//! without the bearer token; TLS on a non-loopback address). The SDK lives in a cached venv that
//! `cargo xtask e2e` / `ci` makes (`BAMBOO_MCP_PYTHON`); the scenarios are
//! in tests/mcp/client.py.

use std::path::Path;
use std::time::Duration;

use bamboo_e2e::tools::run_mcp_driver;
use bamboo_e2e::worker_bin;

/// A scenario runs a few children; this bounds a hung client or server.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// Runs one scenario of client.py against a fresh data directory.
async fn scenario(name: &str) {
    scenario_with(name, &[]).await;
}

/// Runs one scenario with extra environment variables.
async fn scenario_with(name: &str, env: &[(&str, &Path)]) {
    let data = tempfile::tempdir().expect("temp dir");
    let worker = worker_bin();
    let args = [worker.as_os_str(), data.path().as_os_str(), name.as_ref()];
    run_mcp_driver("client.py", &args, env, SCENARIO_LIMIT, name).await;
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
    let pki = bamboo_e2e::remote::Pki::new(dir.path());
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
