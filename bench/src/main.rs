//! `bamboo-bench [GROUP...]`: runs the benchmark groups (all when none is
//! named) against the worker in `BAMBOO_WORKER_BIN`. Started by `cargo xtask
//! bench`, which builds it and the static worker in release first.

/// mimalloc, as an application embedding the engine for high event rates
/// should choose (docs/operations.md, "Event logs"): events are made by the
/// pump and freed by readers on other threads, where glibc's `malloc` is
/// slowest. The worker keeps the system allocator (its idle memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::builder::PossibleValuesParser;
use clap::Parser;

/// Command line of the bench binary.
#[derive(Debug, Parser)]
#[command(about = "Median figures against the targets; run through `cargo xtask bench`")]
struct Args {
    /// Groups to run, in their fixed order; all when none is given.
    #[arg(value_parser = PossibleValuesParser::new(bamboo_bench::GROUPS))]
    groups: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Fails before the first group when the variable is missing.
    bamboo_bench::worker_bin()?;
    bamboo_bench::run(&args.groups).context("benchmark failed")
}
