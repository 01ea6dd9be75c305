//! Starting commands: every child of xtask gets an environment without the
//! variables cargo set for xtask itself.
//!
//! `cargo run` hands its binary `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR` and
//! friends. A nested cargo would pass them on to build scripts, and ring's
//! build script reruns when they change, which recompiles ring, rustls,
//! reqwest and every crate of ours on each switch between `cargo xtask` and a
//! plain `cargo build`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Variables cargo sets for the binary it runs (or the crate it compiles), by
/// exact name. `CARGO`, `CARGO_HOME` and `CARGO_TARGET_DIR` stay: they name
/// the toolchain and the user's choices, the same for every cargo.
const CARGO_SET: [&str; 9] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_TARGET_TMPDIR",
    "CARGO_MAKEFLAGS",
];

/// Prefixes of the variable families cargo sets per package or target.
const CARGO_SET_PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_CFG_"];

/// Whether cargo set `name` for xtask's own run (so a child must not inherit it).
pub fn is_cargo_set(name: &str) -> bool {
    CARGO_SET.contains(&name) || CARGO_SET_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A command for `program`, run from the workspace root, without the
/// cargo-set variables. Every command xtask starts is built here.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_cargo_set) {
            cmd.env_remove(&name);
        }
    }
    cmd.current_dir(root());
    cmd
}

/// `cargo` (the one that started xtask, from `CARGO`) with `args`.
pub fn cargo(args: &[&str]) -> Command {
    let mut cmd = command(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args);
    cmd
}

/// Runs `cmd` to completion; fails unless it exits successfully.
pub fn step(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}: is it installed and on PATH?", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status}); see its output above", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}: is it installed and on PATH?", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line, without the (long) environment.
fn show(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_set_variables_are_stripped_and_user_choices_kept() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_RUSTC_CURRENT_DIR",
        ] {
            assert!(is_cargo_set(name), "{name} must be stripped");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_TERM_COLOR",
            "RUSTFLAGS",
            "PATH",
        ] {
            assert!(!is_cargo_set(name), "{name} must be kept");
        }
    }

    #[test]
    fn a_started_command_does_not_see_cargo_set_variables() {
        // The test binary runs under cargo, so CARGO_PKG_NAME and
        // CARGO_MANIFEST_DIR are set here; the child must not see them.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let env = output(command("env").env("XTASK_PROBE", "1")).unwrap();
        assert!(env.lines().any(|l| l == "XTASK_PROBE=1"), "{env}");
        for line in env.lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(!is_cargo_set(name), "child saw {line}");
        }
    }
}
