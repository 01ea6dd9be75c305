//! Bamboo fleet engine.

pub mod fingerprint;
pub mod pool;
pub mod slots;
pub mod store;
