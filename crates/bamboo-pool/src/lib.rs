//! Bamboo fleet worker pools on NATS JetStream (issue 12): fleets across
//! many machines whose workers dial out.
//!
//! Both sides agree here on names ([`subjects`]), message shapes ([`wire`])
//! and setup ([`setup`]). The worker side is [`worker::join`]; the engine
//! side is [`PoolClient`], whose [`RunSender`] and [`RunReader`] carry the
//! same parent and child frames as the WebSocket link, so the engine's run
//! path is the same for local and pool runs. See docs/protocol.md, "Pools
//! on NATS".

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod connect;
pub mod error;
mod follow;
pub mod reader;
pub mod setup;
pub mod subjects;
pub mod wire;
pub mod worker;

pub use client::{ClientSettings, PoolClient, RunSender};
pub use connect::NatsOptions;
pub use error::PoolError;
pub use reader::{RunPosition, RunReader};
pub use setup::{open_pool, PoolHandles, PoolSettings};
pub use subjects::PoolName;
pub use wire::{LeaseRecord, Taken, WorkItem};
