//! `cargo xtask bench scale` (issue 23): how the front door's cost grows with
//! the number of children, sessions and events. `store` measures fan-out on
//! disk and on tmpfs and a large data directory; `output` long lines, cli
//! children beside `xargs -P8`, and memory.

mod output;
mod store;

pub async fn run() -> anyhow::Result<()> {
    println!("== scale (release build, through the front door, medians) ==");
    store::run().await?;
    output::run().await
}
