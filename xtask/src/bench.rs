//! `cargo xtask bench`: builds the `bamboo-bench` crate and the deployment
//! worker in release, then runs the benchmarks against that worker.

use anyhow::{Context, Result};

use crate::process::{cargo, command, output, step, target_dir};

/// The bench groups, as `bamboo_bench::GROUPS` names them; checked here so a
/// wrong name fails before two release builds (a test keeps the lists equal).
pub const GROUPS: [&str; 6] = ["fleet", "engine", "executors", "remote", "pool", "scale"];

/// Builds, then runs `groups` (all when empty). The worker is the deployment
/// build: release, fat LTO, statically linked and not position-independent
/// (`+crt-static`, `relocation-model=static`: no start-up relocations touching
/// pages), which keeps an idle worker's resident memory small.
pub fn run(groups: &[String]) -> Result<()> {
    step(&mut cargo(&["build", "--release", "-p", "bamboo-bench"]))?;
    let host = host_triple()?;
    // With an explicit --target, RUSTFLAGS reach only target crates, not build
    // scripts or proc-macros (which cannot be static).
    step(
        cargo(&[
            "build",
            "--release",
            "-p",
            "bamboo-worker",
            "--target",
            &host,
        ])
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        ),
    )?;
    let worker = target_dir()
        .join(&host)
        .join("release")
        .join("bamboo-worker");
    let mut bench = command(target_dir().join("release").join("bamboo-bench"));
    bench.args(groups).env("BAMBOO_WORKER_BIN", worker);
    if groups.is_empty() || groups.iter().any(|g| g == "pool") {
        bench.env("BAMBOO_NATS_SERVER", crate::nats::ensure()?);
    }
    step(&mut bench)
}

fn host_triple() -> Result<String> {
    output(command("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no `host:` line: check the Rust toolchain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_match_the_bench_crate() {
        let lib = std::fs::read_to_string(crate::process::root().join("bench/src/lib.rs")).unwrap();
        let line = lib
            .lines()
            .find(|l| l.starts_with("pub const GROUPS"))
            .expect("bench/src/lib.rs defines GROUPS");
        let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(
            quoted, GROUPS,
            "xtask and bamboo-bench disagree on the groups"
        );
    }
}
