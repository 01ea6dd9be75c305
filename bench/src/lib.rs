//! Benchmarks behind `cargo xtask bench`: median figures for the targets in the
//! issues. Run from a release build; timing targets live here, never in
//! pass/fail tests.

mod engine;
mod eventlog;
mod executors;
mod fleet;
pub mod hotpath;
mod pool;
mod remote;
mod scale;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

/// Median of a set of durations.
pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

/// Median of a set of rates.
pub fn median_f(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

/// Prints one figure against its target.
pub fn report(name: &str, value: String, target: &str, ok: bool) {
    let verdict = if ok { "meets" } else { "MISSES" };
    println!("{name:<44} {value:>18}   target {target:<14} {verdict}");
}

/// The groups [`run`] knows, in the order it runs them. `cargo xtask bench`
/// checks names against its own copy of this list before building anything.
pub const GROUPS: [&str; 6] = ["fleet", "engine", "executors", "remote", "pool", "scale"];

/// The worker binary to benchmark, from `BAMBOO_WORKER_BIN`.
pub fn worker_bin() -> Result<PathBuf> {
    std::env::var_os("BAMBOO_WORKER_BIN")
        .map(PathBuf::from)
        .context("BAMBOO_WORKER_BIN is not set: run `cargo xtask bench`")
}

/// Runs the benchmark groups named in `args` (all when empty); names outside
/// [`GROUPS`] are ignored here, the binary rejects them first.
pub fn run(args: &[String]) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let want = |g: &str| args.is_empty() || args.iter().any(|a| a == g);
    runtime.block_on(async {
        if want("fleet") {
            fleet::run().await?;
        }
        if want("engine") {
            engine::run().await?;
        }
        if want("executors") {
            executors::run().await?;
        }
        if want("remote") {
            remote::run().await?;
        }
        if want("pool") {
            pool::run().await?;
        }
        if want("scale") {
            scale::run().await?;
        }
        anyhow::Ok(())
    })
}
