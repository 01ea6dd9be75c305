//! Worker leases: hand a run a connected worker from the
//! warm pool or a fresh launch, and park or retire it after.
//!
//! Parked workers keep their open connection, so a reused worker costs no
//! handshake: the next `run` frame goes straight down the same socket.

// Behaviours: E10, E11, E13.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bamboo_subagent::spec::ProvisionSpec;
use tokio::sync::Notify;

use tokio_util::task::TaskTracker;

use crate::fingerprint::Fingerprint;
use crate::launch::{Admission, LaunchError, Launcher, Link, PlacementLauncher, Worker};
use crate::warm::{Parkable, WarmLimits, WarmPool};

/// A parked worker with its open connection.
#[derive(Debug)]
pub(crate) struct Parked {
    worker: Box<dyn Worker>,
    link: Option<Link>,
}

impl Parkable for Parked {
    fn is_alive(&mut self) -> bool {
        self.worker.is_alive()
    }
}

/// A worker leased to one run.
#[derive(Debug)]
pub(crate) struct Lease {
    pub worker: Box<dyn Worker>,
    pub link: Link,
    pub fingerprint: Fingerprint,
    pub reused: bool,
    /// The launcher's admission (a per-endpoint cap), held for the run.
    pub admission: Option<Admission>,
}

/// What [`WorkerLeases::launch_or_parked`] found.
enum Launched {
    New(Box<dyn Worker>),
    Parked(Box<dyn Worker>, Link),
}

/// The warm pool plus the launch layer's router.
#[derive(Debug)]
pub(crate) struct WorkerLeases {
    /// Where new workers come from, by placement.
    pub launcher: Arc<PlacementLauncher>,
    pool: Mutex<WarmPool<Fingerprint, Parked>>,
    started: AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
    /// Background kills, awaited by `shutdown` so no process outlives it.
    retiring: TaskTracker,
    /// Told whenever a worker is parked (see [`WorkerLeases::acquire`]).
    parked: Notify,
}

impl WorkerLeases {
    pub fn new(launcher: Arc<PlacementLauncher>, limits: WarmLimits) -> Self {
        Self {
            launcher,
            pool: Mutex::new(WarmPool::new(limits)),
            started: AtomicUsize::new(0),
            closed: Default::default(),
            retiring: TaskTracker::new(),
            parked: Notify::new(),
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, WarmPool<Fingerprint, Parked>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Workers started so far.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Idle workers parked now.
    pub fn idle(&self) -> usize {
        self.pool().idle_total()
    }

    /// A connected worker for `spec`: a live pooled one (a dead or unreachable
    /// one is reaped and replaced once; a closed parked connection is
    /// reopened), else a fresh spawn.
    pub async fn acquire(&self, spec: &ProvisionSpec) -> Result<Lease, LaunchError> {
        let fingerprint = Fingerprint::of(spec);
        // Before the pool: a worker parked while this run waited is reused.
        let admission = self.launcher.admit(spec).await;
        let checkout = self.pool().checkout(&fingerprint);
        self.retire_all(checkout.dead);
        if let Some(mut parked) = checkout.worker {
            // A parked connection the worker closed is replaced, not used.
            let mut open = parked.link.take();
            if open.as_mut().is_some_and(|l| l.rx.is_closed()) {
                tracing::debug!(pid = ?parked.worker.pid(), "parked connection closed; reconnecting");
                open = None;
            }
            let link = match open {
                Some(link) => Ok(link),
                None => parked.worker.connect().await,
            };
            match link {
                Ok(link) => {
                    return Ok(Lease {
                        worker: parked.worker,
                        link,
                        fingerprint,
                        reused: true,
                        admission,
                    })
                }
                Err(e) => {
                    tracing::info!(error = %e, "pooled worker unreachable; replacing it");
                    self.retire(parked.worker);
                }
            }
        }
        let mut worker = match self.launch_or_parked(spec, &fingerprint).await? {
            Launched::New(worker) => worker,
            Launched::Parked(worker, link) => {
                return Ok(Lease {
                    worker,
                    link,
                    fingerprint,
                    reused: true,
                    admission,
                })
            }
        };
        self.started.fetch_add(1, Ordering::Relaxed);
        match worker.connect().await {
            Ok(link) => Ok(Lease {
                worker,
                link,
                fingerprint,
                reused: false,
                admission,
            }),
            Err(e) => {
                worker.kill().await;
                Err(LaunchError::Connect(e))
            }
        }
    }

    /// A new worker for `spec`; for a resident worker, also whichever
    /// connection of the same fingerprint is parked first. A resident worker
    /// answers "busy" while its run slots are taken, parked connections of
    /// this engine included, and the launcher keeps asking: the run must
    /// then take the connection the next finished run parks, or wait on it
    /// forever. A local spawn is never raced (abandoning it wastes a start).
    async fn launch_or_parked(
        &self,
        spec: &ProvisionSpec,
        fingerprint: &Fingerprint,
    ) -> Result<Launched, LaunchError> {
        if !PlacementLauncher::waits_for_capacity(spec) {
            return Ok(Launched::New(self.launcher.launch(spec).await?));
        }
        let parked = async {
            loop {
                let notified = self.parked.notified();
                let checkout = self.pool().checkout(fingerprint);
                self.retire_all(checkout.dead);
                if let Some(mut p) = checkout.worker {
                    let mut open = p.link.take();
                    if open.as_mut().is_some_and(|l| l.rx.is_closed()) {
                        open = None;
                    }
                    let link = match open {
                        Some(link) => Ok(link),
                        None => p.worker.connect().await,
                    };
                    match link {
                        Ok(link) => return (p.worker, link),
                        Err(e) => {
                            tracing::info!(error = %e, "pooled worker unreachable; replacing it");
                            self.retire(p.worker);
                        }
                    }
                }
                notified.await;
            }
        };
        tokio::select! {
            launched = self.launcher.launch(spec) => Ok(Launched::New(launched?)),
            (worker, link) = parked => Ok(Launched::Parked(worker, link)),
        }
    }

    /// After a run: park the worker when the run ended cleanly and it is alive,
    /// otherwise retire it. Extras beyond the pool caps are retired.
    // Behaviours: E13.
    pub fn release(&self, mut lease: Lease, clean: bool) {
        // Given back at the end, once the worker is parked: a run woken by
        // it then finds the parked worker instead of opening another.
        let _admission = lease.admission.take();
        let closed = self.closed.load(Ordering::Acquire);
        if !clean || closed || !lease.worker.is_alive() {
            self.retire(lease.worker);
            return;
        }
        let parked = Parked {
            worker: lease.worker,
            link: Some(lease.link),
        };
        if let Some(extra) = self.pool().checkin(lease.fingerprint, parked) {
            self.retire(extra.worker);
        }
        self.parked.notify_waiters();
    }

    /// Retires every worker parked for longer than `max_idle`. Returns how many.
    pub fn evict_idle(&self, max_idle: std::time::Duration) -> usize {
        let Some(cutoff) = std::time::Instant::now().checked_sub(max_idle) else {
            return 0;
        };
        let stale = self.pool().evict_parked_before(cutoff);
        let n = stale.len();
        self.retire_all(stale);
        n
    }

    /// Refuses further parking and kills every idle worker, waiting for each.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let drained = self.pool().drain();
        for mut p in drained {
            drop(p.link.take());
            p.worker.kill().await;
        }
        self.retiring.close();
        self.retiring.wait().await;
    }

    /// Kills a worker in the background (kill waits for the reap).
    fn retire(&self, mut worker: Box<dyn Worker>) {
        self.retiring.spawn(async move { worker.kill().await });
    }

    fn retire_all(&self, parked: Vec<Parked>) {
        for p in parked {
            self.retire(p.worker);
        }
    }
}
