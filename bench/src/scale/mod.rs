//! `cargo xtask bench scale` (issue 23): output, fan-out and memory at scale.

mod output;

pub async fn run() -> anyhow::Result<()> {
    output::run().await
}
