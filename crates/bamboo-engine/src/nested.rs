//! Nested spawn: a child asks, over `subagent_request`, for a grandchild.
//! The run path does not serve it itself: it hands the request to the
//! [`NestedSpawner`] injected into the run path (the facade, see
//! `api_nested.rs`), which creates the grandchild under the requesting child
//! and runs it through the canonical spawn path. Every request is answered
//! (`success: false` on failure) rather than leaving the child waiting.
//!
//! The depth cap holds at every level: `create_child` checks it, and the
//! spec tells a worker at the cap `nested_spawn: false` (the `bamboo_runtime`
//! executor then offers no `spawn_subagent` tool). While it waits for the
//! grandchild, the asking run lends its running slot (`slots.rs`) and takes
//! one again before the reply goes out, so nesting cannot deadlock, even at a
//! limit of 1.

// Behaviours: E18.

use futures::future::BoxFuture;
use serde_json::Value;

/// Serves a child's nested spawn request; always yields the reply body.
pub(crate) trait NestedSpawner: Send + Sync + std::fmt::Debug {
    /// Serves one request from `requester` (its tool-result JSON body).
    fn serve(&self, requester: String, body: Value) -> BoxFuture<'static, Value>;
}
