//! The engine with real worker processes, one module per area: fan-out and
//! the warm pool, events, approvals, failures and recovery, steering, the
//! executors, the SubAgent tool's face, link bounds and a full disk. One test
//! binary, so the suite links the world once for all of them.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod api;
mod approvals;
mod approvals_chain;
mod child_lifecycle;
mod create;
mod events;
mod executors;
mod failures;
mod fanout;
mod fidelity;
mod full_disk;
mod link_bounds;
mod steering;
mod tool_face;
mod warm_pool;
