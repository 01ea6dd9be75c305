//! Helpers shared by the end-to-end suite: locating the worker binary.

use std::path::PathBuf;

/// Path of the `bamboo-worker` binary under test: `BAMBOO_WORKER_BIN` when set
/// (`cargo xtask e2e` sets it), else the workspace's debug build.
pub fn worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BAMBOO_WORKER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("bamboo-worker");
    assert!(
        bin.exists(),
        "worker binary not found at {}: run `cargo xtask e2e` or `cargo build -p bamboo-worker` first",
        bin.display()
    );
    bin
}
