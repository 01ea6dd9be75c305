//! The MCP client the `bamboo-worker mcp` tests drive it with (issue 21):
//! the official MCP Python SDK in a cached virtualenv, found or installed
//! here, so those tests never skip; a machine without python3 stops here,
//! saying what to install. (Claude Code, the other client, comes from
//! `coding_agents`.)

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::process::{command, step};

/// The PyPI `mcp` version the tests are written against.
const MCP_SDK: &str = "mcp==2.3.0";

/// The per-user cache the tools live in, kept across clones and runs.
fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".cache"),
            None => bail!("neither XDG_CACHE_HOME nor HOME is set: set one so the MCP test clients can be cached, or set BAMBOO_MCP_PYTHON and BAMBOO_CLAUDE_BIN"),
        },
    };
    Ok(base.join("bamboo-fleet"))
}

/// A python with the MCP SDK: `BAMBOO_MCP_PYTHON`, else the cache venv,
/// created and filled with pip when missing.
pub fn python_sdk() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BAMBOO_MCP_PYTHON").map(PathBuf::from) {
        return Ok(p);
    }
    let venv = cache_dir()?.join("mcp-venv");
    let python = venv.join("bin").join("python");
    if has_sdk(&python) {
        return Ok(python);
    }
    eprintln!(
        "xtask: installing the MCP Python SDK ({MCP_SDK}) in {}",
        venv.display()
    );
    step(command("python3").arg("-m").arg("venv").arg(&venv)).context(
        "cannot create a virtualenv with python3 -m venv: install python3 and its venv module (apt-get install -y python3-venv), then rerun",
    )?;
    step(command(venv.join("bin").join("pip")).args(["install", "--quiet", MCP_SDK]))
        .with_context(|| format!("pip could not install {MCP_SDK} into {}", venv.display()))?;
    if !has_sdk(&python) {
        bail!(
            "{MCP_SDK} was installed into {} but `import mcp` still fails there",
            venv.display()
        );
    }
    Ok(python)
}

fn has_sdk(python: &Path) -> bool {
    python.is_file()
        && command(python)
            .args(["-c", "import mcp.client.stdio"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}
