//! The worker side of the `bamboo-worker` binary as a library (worker mode,
//! `serve`), so tests and benchmarks can reach it. It depends on the
//! executors and the protocol, never on the engine or the front door.

pub mod memory;
pub mod resident;
pub mod resident_pki;
pub mod serve;
pub mod stdin_spec;
