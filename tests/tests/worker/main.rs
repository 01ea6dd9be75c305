//! The worker process on its own: real `bamboo-worker` processes over real
//! sockets (runs, bad specs, auth), parents that are not ours, and process
//! containment (orphans, a killed worker, cgroups). One test binary, so the
//! suite links the world once for all of them.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod cgroup;
mod containment;
mod foreign_parent;
mod orphans;
mod process;
mod reference_parent;
mod runs;
mod unimplemented_capabilities;
