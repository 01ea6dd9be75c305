//! The outside programs some tests drive, found where `cargo xtask e2e` put
//! them (`BAMBOO_MCP_PYTHON`, `BAMBOO_CLAUDE_BIN`, `BAMBOO_CODEX_BIN`):
//! without one, a test fails saying how to get it; it never skips. Also the
//! Python drivers of tests/mcp, run to the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The file `var` names; panics saying how to get `what` when it is unset or
/// not a file.
pub fn from_env(var: &str, what: &str) -> PathBuf {
    let Some(path) = std::env::var_os(var).map(PathBuf::from) else {
        panic!(
            "{var} is not set: run the suite with `cargo xtask e2e` (it finds or installs {what} in ~/.cache/bamboo-fleet), or point {var} at one"
        )
    };
    assert!(
        path.is_file(),
        "{var}={} is not a file: point it at {what}",
        path.display()
    );
    path
}

/// The real Claude Code binary.
pub fn claude_bin() -> PathBuf {
    from_env("BAMBOO_CLAUDE_BIN", "Claude Code")
}

/// The real Codex binary.
pub fn codex_bin() -> PathBuf {
    from_env("BAMBOO_CODEX_BIN", "Codex")
}

/// The python of the venv holding the MCP Python SDK.
pub fn mcp_python() -> PathBuf {
    from_env("BAMBOO_MCP_PYTHON", "a python with the MCP Python SDK")
}

/// Runs the tests/mcp driver `script` with `args` and `env` to its end
/// (at most `limit`), and asserts it succeeded and printed `ok NAME`.
pub async fn run_mcp_driver(
    script: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &Path)],
    limit: Duration,
    name: &str,
) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("mcp")
        .join(script);
    let child = tokio::process::Command::new(mcp_python())
        .envs(env.iter().copied())
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish in {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot read the output of {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {name}")),
        "{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}
