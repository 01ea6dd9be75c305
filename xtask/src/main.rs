//! Project automation. `cargo xtask ci` is the one command CI runs.
//!
//! - `cargo xtask ci`: tidy, fmt check, clippy (warnings denied), every test
//!   including the end-to-end suite.
//! - `cargo xtask e2e`: builds the worker and runs the cross-process suite.
//!   Both find `nats-server` for the pool tests first, installing it with
//!   apt-get when missing and root (else they stop and say how), and the
//!   MCP clients of the `bamboo-worker mcp` tests (the Python SDK in a cached
//!   venv) and the real `claude` and `codex` binaries (env var, PATH, else a
//!   pinned npm install in the user cache), installing them when missing.
//! - `cargo xtask bench [GROUP...]`: release builds, prints median figures.
//! - `cargo xtask tidy`: behaviour IDs against the glossary, module docs, no
//!   import circle in the engine (nor the run path naming the API), the
//!   layering, the code map of docs/ARCHITECTURE.md.

mod bench;
mod coding_agents;
mod import_cycles;
mod layers;
mod mcp_clients;
mod nats;
mod process;
mod tidy;

use anyhow::Result;
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};

use process::{cargo, root, step, target_dir};

/// `cargo xtask <TASK>`.
#[derive(Debug, Parser)]
#[command(
    bin_name = "cargo xtask",
    about = "Project automation for Bamboo fleet"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// tidy, fmt --check, clippy -D warnings, unit, integration and end-to-end tests.
    Ci,
    /// Build the worker and run the end-to-end suite in tests/.
    E2e,
    /// Build the benches and a static worker in release, print median figures.
    Bench {
        /// Groups to run (all when none is given).
        #[arg(value_parser = PossibleValuesParser::new(bench::GROUPS))]
        groups: Vec<String>,
    },
    /// Check that code cites only behaviour IDs of docs/behaviors.md, every
    /// .rs file starts with a `//!` line, the code map of docs/ARCHITECTURE.md
    /// matches the tree, the crates are layered and the engine has no import
    /// circle.
    Tidy,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Ci => ci(),
        Task::E2e => e2e(),
        Task::Bench { groups } => bench::run(&groups),
        Task::Tidy => tidy::run(&root()),
    }
}

fn ci() -> Result<()> {
    tidy::run(&root())?;
    step(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
    step(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    build_worker()?;
    let nats = nats::ensure()?;
    step(
        with_tools(with_worker(cargo(&["test", "--workspace"])))?.env("BAMBOO_NATS_SERVER", &nats),
    )?;
    eprintln!("xtask: ci passed");
    Ok(())
}

fn e2e() -> Result<()> {
    build_worker()?;
    let nats = nats::ensure()?;
    step(
        with_tools(with_worker(cargo(&["test", "-p", "bamboo-e2e"])))?
            .env("BAMBOO_NATS_SERVER", &nats),
    )
}

/// The debug worker the end-to-end suite starts.
fn build_worker() -> Result<()> {
    step(&mut cargo(&["build", "-p", "bamboo-worker"]))
}

/// Points the tests at the MCP clients they drive `bamboo-worker mcp` with.
fn with_tools(mut cmd: std::process::Command) -> Result<std::process::Command> {
    cmd.env("BAMBOO_MCP_PYTHON", mcp_clients::python_sdk()?);
    coding_agents::with_agents(&mut cmd)?;
    Ok(cmd)
}

/// Points the tests at the debug worker.
fn with_worker(mut cmd: std::process::Command) -> std::process::Command {
    cmd.env(
        "BAMBOO_WORKER_BIN",
        target_dir().join("debug").join("bamboo-worker"),
    );
    cmd
}
