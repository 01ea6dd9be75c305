//! Bamboo fleet engine.

pub mod store;
