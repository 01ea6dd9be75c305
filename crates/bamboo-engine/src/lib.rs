//! Bamboo fleet engine.

pub mod approval;
pub mod fingerprint;
pub mod hub;
pub mod pool;
pub mod slots;
pub mod steering;
pub mod store;
pub mod watchdog;
pub mod worker;
