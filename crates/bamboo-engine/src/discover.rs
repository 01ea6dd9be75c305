//! Finding the worker program when the builder was not given one.
//!
//! Looked for, in order: `BAMBOO_WORKER_BIN`; next to the running program
//! and in its parent directory (cargo puts examples in `target/debug/examples`
//! and tests in `target/debug/deps`, the worker in `target/debug`); when
//! cargo runs us (tests, doc-tests, `cargo run`), in the workspace's build
//! directory; then every directory of `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable that names the worker program.
pub(crate) const WORKER_BIN_ENV: &str = "BAMBOO_WORKER_BIN";

/// The worker program's file name.
const WORKER_NAME: &str = "bamboo-worker";

/// Why no worker program was found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FindWorkerError {
    /// `BAMBOO_WORKER_BIN` names something that is not a file.
    #[error("{WORKER_BIN_ENV}={0} is not a file: point it at the bamboo-worker program (build it with `cargo build -p bamboo-worker`)")]
    EnvNotAFile(PathBuf),
    /// Nothing found anywhere.
    #[error("no bamboo-worker program found: set {WORKER_BIN_ENV} to its path, or build it with `cargo build -p bamboo-worker` (looked at {looked})")]
    NotFound {
        /// The places looked at, comma-separated.
        looked: String,
    },
}

/// The worker program, from the process's environment.
pub(crate) fn worker_program() -> Result<PathBuf, FindWorkerError> {
    find(&Env {
        worker_bin: std::env::var_os(WORKER_BIN_ENV),
        current_exe: std::env::current_exe().ok(),
        target_dir: std::env::var_os("CARGO_TARGET_DIR"),
        manifest_dir: std::env::var_os("CARGO_MANIFEST_DIR"),
        cwd: std::env::current_dir().ok(),
        path: std::env::var_os("PATH"),
    })
}

/// What the search reads from the environment.
#[derive(Debug, Default)]
struct Env {
    worker_bin: Option<OsString>,
    current_exe: Option<PathBuf>,
    target_dir: Option<OsString>,
    manifest_dir: Option<OsString>,
    cwd: Option<PathBuf>,
    path: Option<OsString>,
}

fn find(env: &Env) -> Result<PathBuf, FindWorkerError> {
    if let Some(bin) = env.worker_bin.as_ref().filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(FindWorkerError::EnvNotAFile(bin))
        };
    }
    let candidates = candidates(env);
    if let Some(found) = candidates.iter().find(|p| is_program(p)) {
        return Ok(found.clone());
    }
    // PATH is the user's own: named, not listed.
    let on_path = env
        .path
        .as_ref()
        .map_or(0, |p| std::env::split_paths(p).count());
    let mut looked: Vec<String> = candidates
        .iter()
        .take(candidates.len().saturating_sub(on_path))
        .map(|p| p.display().to_string())
        .collect();
    looked.push("PATH".into());
    let looked = looked.join(", ");
    Err(FindWorkerError::NotFound { looked })
}

/// Every place to look, in order.
fn candidates(env: &Env) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = env.current_exe.as_deref().and_then(Path::parent) {
        dirs.push(dir.to_path_buf());
        if let Some(up) = dir.parent() {
            dirs.push(up.to_path_buf());
        }
    }
    // Under cargo (a doc-test runs from a temporary directory): the build
    // directory of the workspace being tested.
    if let Some(manifest) = env.manifest_dir.as_ref().map(PathBuf::from) {
        // CARGO_TARGET_DIR when set (a relative one is cargo's working
        // directory's), else `target` beside the package or a workspace
        // above it.
        let mut targets: Vec<PathBuf> = Vec::new();
        if let Some(t) = env.target_dir.as_ref().map(PathBuf::from) {
            match (t.is_relative(), &env.cwd) {
                (true, Some(cwd)) => targets.push(cwd.join(t)),
                (true, None) => {}
                (false, _) => targets.push(t),
            }
        }
        targets.extend(manifest.ancestors().map(|a| a.join("target")));
        for t in targets {
            dirs.push(t.join("debug"));
            dirs.push(t.join("release"));
        }
    }
    if let Some(path) = &env.path {
        dirs.extend(std::env::split_paths(path));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let p = d.join(WORKER_NAME);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// A file this process may execute.
fn is_program(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn program(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(WORKER_NAME);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn the_variable_wins_and_a_wrong_one_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let there = program(&tmp.path().join("custom"));
        program(&tmp.path().join("bin"));
        let env = Env {
            worker_bin: Some(there.clone().into()),
            path: Some(tmp.path().join("bin").into()),
            ..Env::default()
        };
        assert_eq!(find(&env).unwrap(), there);
        let env = Env {
            worker_bin: Some(tmp.path().join("nope").into()),
            ..Env::default()
        };
        let err = find(&env).unwrap_err().to_string();
        assert!(
            err.contains("BAMBOO_WORKER_BIN=") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn next_to_the_program_then_its_parent_then_path() {
        let tmp = tempfile::tempdir().unwrap();
        let debug = tmp.path().join("target/debug");
        let exe = debug.join("examples/fan_out");
        let on_path = program(&tmp.path().join("bin"));
        let env = |exe: &Path| Env {
            current_exe: Some(exe.to_path_buf()),
            path: Some(tmp.path().join("bin").into()),
            ..Env::default()
        };
        assert_eq!(find(&env(&exe)).unwrap(), on_path);
        let in_debug = program(&debug);
        assert_eq!(find(&env(&exe)).unwrap(), in_debug);
        let in_examples = program(&debug.join("examples"));
        assert_eq!(find(&env(&exe)).unwrap(), in_examples);
    }

    #[test]
    fn under_cargo_the_workspace_target_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let built = program(&tmp.path().join("target/debug"));
        let env = Env {
            current_exe: Some("/nowhere/rustdoctest/rust_out".into()),
            manifest_dir: Some(tmp.path().join("crates/bamboo-engine").into()),
            ..Env::default()
        };
        assert_eq!(find(&env).unwrap(), built);
        let elsewhere = program(&tmp.path().join("elsewhere/debug"));
        let env = Env {
            target_dir: Some(tmp.path().join("elsewhere").into()),
            ..env
        };
        assert_eq!(find(&env).unwrap(), elsewhere);
    }

    #[test]
    fn none_found_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(WORKER_NAME), "not executable").unwrap();
        let env = Env {
            path: Some(tmp.path().into()),
            ..Env::default()
        };
        let err = find(&env).unwrap_err().to_string();
        assert!(err.contains("BAMBOO_WORKER_BIN"), "{err}");
        assert!(err.contains("cargo build -p bamboo-worker"), "{err}");
    }
}
