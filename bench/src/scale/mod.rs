//! The scale curve (issue 23): how the front door's cost grows with the
//! number of children and sessions. `store` measures fan-out on disk and on
//! tmpfs and a large data directory.

mod store;

pub async fn run() -> anyhow::Result<()> {
    println!("== scale (release build, through the front door, medians) ==");
    store::run().await
}
