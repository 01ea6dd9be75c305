//! The Bamboo sub-agent protocol: everything two processes must agree on.
//!
//! - [`spec`]: the ProvisionSpec a parent writes to a worker's stdin.
//! - [`record`] and [`fabric`]: the file-based discovery fabric.
//! - [`frames`]: the WebSocket frames.
//! - [`executor`]: the executor seam and the echo executor.
//!
//! The normative contract is `shared/protocol.md`; `docs/protocol.md` is this
//! project's account of it.

pub mod executor;
pub mod frames;
pub mod record;
pub mod resident;
pub mod secret;
pub mod spec;
pub mod token_file;

pub use secret::Secret;
pub mod fabric;
pub mod fleet;
pub mod idle;
pub mod transport;
pub mod worker;
