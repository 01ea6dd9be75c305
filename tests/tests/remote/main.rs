//! Workers the engine reaches over the network: resident ones (`serve`, TLS
//! and a bearer token) and pooled ones on NATS JetStream (`join`). One test
//! binary, so the suite links the world once for both.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod nats_pool;
mod resident;
