//! The warm pool against connections that break while a worker is parked
//! (E10, E13): real worker processes, with the engine's view of their
//! connections wrapped so a test can break one between runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::CompletionStatus;
use bamboo_e2e::engine::*;
use bamboo_engine::async_trait;
use bamboo_engine::launch::{
    FrameRx, LaunchError, Launcher, Link, LinkError, LocalLauncher, Worker,
};
use bamboo_subagent::fleet::WorkerCommand;
use bamboo_subagent::frames::ChildFrame;
use bamboo_subagent::spec::ProvisionSpec;

/// Shared switches: `broken` makes every open connection look closed, as if
/// the worker had dropped it; `connects` counts connections opened.
#[derive(Debug, Default)]
struct Switches {
    broken: AtomicBool,
    connects: AtomicUsize,
}

#[derive(Debug)]
struct Switched(LocalLauncher, Arc<Switches>);

#[async_trait]
impl Launcher for Switched {
    async fn launch(&self, spec: &ProvisionSpec) -> Result<Box<dyn Worker>, LaunchError> {
        Ok(Box::new(SwitchedWorker(
            self.0.launch(spec).await?,
            self.1.clone(),
        )))
    }
}

#[derive(Debug)]
struct SwitchedWorker(Box<dyn Worker>, Arc<Switches>);

#[async_trait]
impl Worker for SwitchedWorker {
    fn pid(&self) -> Option<u32> {
        self.0.pid()
    }
    fn is_alive(&mut self) -> bool {
        self.0.is_alive()
    }
    async fn connect(&self) -> Result<Link, LinkError> {
        let link = self.0.connect().await?;
        self.1.connects.fetch_add(1, Ordering::SeqCst);
        // A new connection starts whole.
        self.1.broken.store(false, Ordering::SeqCst);
        Ok(Link {
            tx: link.tx,
            rx: Box::new(Rx(link.rx, self.1.clone())),
        })
    }
    async fn kill(&mut self) {
        self.0.kill().await;
    }
}

struct Rx(Box<dyn FrameRx>, Arc<Switches>);

#[async_trait]
impl FrameRx for Rx {
    async fn recv(&mut self) -> Option<Result<ChildFrame, LinkError>> {
        if self.1.broken.load(Ordering::SeqCst) {
            return None;
        }
        self.0.recv().await
    }
    fn is_closed(&mut self) -> bool {
        self.1.broken.load(Ordering::SeqCst) || self.0.is_closed()
    }
}

/// A parked worker whose connection closed while its process lives is
/// reconnected at checkout: the next child runs on it and completes, instead
/// of failing with "connection closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_that_closed_is_reopened_before_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches::default());
    let fleet = LocalLauncher::new(
        WorkerCommand::new(bamboo_e2e::worker_bin()),
        Duration::from_secs(10),
    );
    let engine = builder(dir.path(), 1)
        .launcher(Arc::new(Switched(fleet, switches.clone())))
        .build()
        .await
        .unwrap();
    let (root, first) = root_and_child(&engine, "one").await;
    let one = run_report(&engine, &root, &first).await;
    assert_eq!(one.status, CompletionStatus::Completed, "{one:?}");
    switches.broken.store(true, Ordering::SeqCst);
    let second = engine
        .create_child(bamboo_engine::CreateChild::new(&root, "two"))
        .await
        .unwrap();
    let two = run_report(&engine, &root, &second.id).await;
    assert_eq!(two.status, CompletionStatus::Completed, "{two:?}");
    assert_eq!(
        two.worker_pid, one.worker_pid,
        "the same worker, reconnected"
    );
    assert_eq!(switches.connects.load(Ordering::SeqCst), 2);
    assert_eq!(engine.stats().workers_started, 1);
    engine.shutdown().await;
}
