//! Project automation. `cargo xtask ci` is the one command CI runs.
//!
//! - `cargo xtask ci`: fmt check, clippy (warnings denied), every test
//!   including the end-to-end suite.
//! - `cargo xtask e2e`: builds the worker and runs the cross-process suite.
//! - `cargo xtask bench`: release build, prints median figures.

mod bench;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <ci|e2e|bench>
  ci     fmt --check, clippy -D warnings, unit, integration and end-to-end tests
  e2e    build the worker and run the end-to-end suite in tests/
  bench  build in release and print median figures (cold, warm, stream, memory, engine, executors)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("e2e") => e2e(),
        Some("bench") => bench_release(&args[1..]),
        Some("bench-run") => bench::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n{USAGE}"),
        None => bail!("no task given\n{USAGE}"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo(args: &[&str]) -> Result<()> {
    step(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn step(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    e2e_build()?;
    cargo_test(&["test", "--workspace"])?;
    eprintln!("xtask: ci passed");
    Ok(())
}

fn e2e() -> Result<()> {
    e2e_build()?;
    cargo_test(&["test", "-p", "bamboo-e2e"])
}

fn e2e_build() -> Result<()> {
    cargo(&["build", "-p", "bamboo-worker"])
}

fn cargo_test(args: &[&str]) -> Result<()> {
    let bin = target_dir().join("debug").join("bamboo-worker");
    step(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .env("BAMBOO_WORKER_BIN", bin),
    )
}

/// Builds this tool in release, and the worker as the deployment build: release,
/// fat LTO, statically linked and not position-independent (`+crt-static`,
/// `relocation-model=static`: no start-up relocations touching pages), which keeps
/// an idle worker's resident memory small. Then runs the benchmarks from the
/// release build so the client side is optimised too.
fn bench_release(args: &[String]) -> Result<()> {
    cargo(&["build", "--release", "-p", "xtask"])?;
    let host = host_triple()?;
    // With an explicit --target, RUSTFLAGS reach only target crates, not build
    // scripts or proc-macros (which cannot be static).
    step(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
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
    let mut cmd = Command::new(target_dir().join("release").join("xtask"));
    cmd.arg("bench-run")
        .args(args)
        .env("BAMBOO_WORKER_BIN", worker);
    step(&mut cmd)
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host line")
}
