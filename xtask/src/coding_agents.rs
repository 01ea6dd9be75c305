//! The real coding agents the tests drive as children (issue 20): Claude
//! Code and Codex from npm, found or installed here so their tests never
//! skip. Each is `BAMBOO_CLAUDE_BIN` / `BAMBOO_CODEX_BIN` when set, else on
//! `PATH`, else a pinned version in the per-user cache
//! (`~/.cache/bamboo-fleet/<name>`), installed with npm when missing. A
//! machine without npm stops here, saying what to install.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::process::{command, step};

/// One agent CLI: how it is found and installed.
struct Agent {
    /// Environment variable naming the binary.
    var: &'static str,
    /// Program name on PATH.
    program: &'static str,
    /// The pinned npm package.
    package: &'static str,
    /// The native binary inside the install directory.
    bin: &'static str,
}

const CLAUDE: Agent = Agent {
    var: "BAMBOO_CLAUDE_BIN",
    program: "claude",
    package: "@anthropic-ai/claude-code@2.1.197",
    bin: "node_modules/@anthropic-ai/claude-code-linux-x64/claude",
};

const CODEX: Agent = Agent {
    var: "BAMBOO_CODEX_BIN",
    program: "codex",
    package: "@openai/codex@0.169.1",
    bin: "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
};

/// Sets `BAMBOO_CLAUDE_BIN` and `BAMBOO_CODEX_BIN` on `cmd`.
pub fn with_agents(cmd: &mut std::process::Command) -> Result<&mut std::process::Command> {
    cmd.env(CLAUDE.var, ensure(&CLAUDE)?);
    cmd.env(CODEX.var, ensure(&CODEX)?);
    Ok(cmd)
}

fn ensure(agent: &Agent) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(agent.var).map(PathBuf::from) {
        if runs(&p) {
            return Ok(p);
        }
        bail!(
            "{}={} does not run (`--version` failed): point it at a working {} binary, or unset it",
            agent.var,
            p.display(),
            agent.program
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|d| d.join(agent.program))
        .find(|p| runs(p))
    {
        return Ok(found);
    }
    let dir = cache_dir()?.join(agent.program);
    let bin = dir.join(agent.bin);
    if runs(&bin) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing {} with npm in {}",
        agent.package,
        dir.display()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    step(
        command("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(agent.package),
    )
    .with_context(|| {
        format!(
            "npm could not install {}: install node and npm (apt-get install -y npm), then rerun; or set {} to a {} binary",
            agent.package, agent.var, agent.program
        )
    })?;
    if !runs(&bin) {
        bail!(
            "npm installed {} but {} does not run (`--version` failed)",
            agent.package,
            bin.display()
        );
    }
    Ok(bin)
}

/// The per-user cache the agents live in, kept across clones and runs.
fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".cache"),
            None => bail!("neither XDG_CACHE_HOME nor HOME is set: set one so the coding agents can be cached, or set BAMBOO_CLAUDE_BIN and BAMBOO_CODEX_BIN"),
        },
    };
    Ok(base.join("bamboo-fleet"))
}

fn runs(bin: &Path) -> bool {
    bin.is_file()
        && command(bin)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}
