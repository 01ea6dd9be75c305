//! Finding `nats-server` for the pool tests (issue 12), installing it when
//! missing and we are root: a fresh machine needs only the README's
//! commands. Never a silent skip: without a server the tests fail, so this
//! stops first with how to install it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::process::{command, step};

/// Where the server is looked for besides `PATH` (Debian installs it in sbin).
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/usr/bin"];

/// The `nats-server` binary: `BAMBOO_NATS_SERVER`, `PATH`, the sbin
/// directories; installed with apt-get when missing and running as root.
pub fn ensure() -> Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    if !is_root() {
        bail!(
            "nats-server is missing; the pool tests start their own. Install it with \
             `sudo apt-get install -y nats-server` (Debian/Ubuntu) or put a nats-server \
             2.9+ binary on PATH (or set BAMBOO_NATS_SERVER), then rerun"
        );
    }
    eprintln!("xtask: nats-server is missing; installing it with apt-get");
    let installed = step(command("apt-get").args(["install", "-y", "nats-server"]));
    if installed.is_err() {
        // A fresh machine may have no package lists yet.
        step(command("apt-get").arg("update"))?;
        step(command("apt-get").args(["install", "-y", "nats-server"]))?;
    }
    match find() {
        Some(found) => Ok(found),
        None => bail!("apt-get installed nats-server but no binary was found in PATH or /usr/sbin"),
    }
}

fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BAMBOO_NATS_SERVER").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Effective uid 0, read from /proc (no libc call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}
