//! The `run` front door as people and scripts use it: output and exit codes,
//! sessions after the run, the GNU-parallel-like flags, and no secret in its
//! logs. One test binary, so the suite links the world once for all of them.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod front_door;
mod no_token_in_logs;
mod parallel_flags;
mod sessions;
mod store_crash;
