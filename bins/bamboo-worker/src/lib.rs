//! The Bamboo fleet worker as a library: the real executors and the pieces of the
//! `bamboo-worker` binary, so tests and benchmarks can reach them.

pub mod executor_flags;
pub mod executors;
pub mod front;
pub mod mcp;
pub mod memory;
pub mod resident;
pub mod resident_pki;
pub mod serve;
pub mod stdin_spec;
