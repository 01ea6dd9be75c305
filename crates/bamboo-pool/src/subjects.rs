//! Names on the NATS server of one pool: streams, subjects, consumer and
//! key-value bucket (docs/protocol.md, "Pools on NATS").

use crate::error::PoolError;

/// A validated pool name: 1-64 ASCII letters, digits, `-` or `_`, so it can
/// be one subject token and part of a stream and bucket name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolName(String);

impl PoolName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Self, PoolError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(PoolError::BadPoolName(name.to_owned()))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The work-queue stream (retention: work queue, file storage).
    pub fn work_stream(&self) -> String {
        format!("BAMBOO_WORK_{}", self.0)
    }

    /// The subject runs are queued on.
    pub fn work_subject(&self) -> String {
        format!("bamboo.pool.{}.work", self.0)
    }

    /// The durable pull consumer every worker of the pool shares.
    pub fn work_consumer(&self) -> &'static str {
        "workers"
    }

    /// The stream holding every run's frames in both directions.
    pub fn runs_stream(&self) -> String {
        format!("BAMBOO_RUNS_{}", self.0)
    }

    /// Wildcard of the runs stream.
    pub fn runs_wildcard(&self) -> String {
        format!("bamboo.pool.{}.run.>", self.0)
    }

    /// Worker to engine: the run's events, requests and terminal.
    pub fn out_subject(&self, run_id: &str) -> String {
        format!("bamboo.pool.{}.run.{run_id}.out", self.0)
    }

    /// Engine to worker: cancel, steering, approval and spawn replies.
    pub fn in_subject(&self, run_id: &str) -> String {
        format!("bamboo.pool.{}.run.{run_id}.in", self.0)
    }

    /// The key-value bucket of worker leases.
    pub fn lease_bucket(&self) -> String {
        format!("bamboo_workers_{}", self.0)
    }
}

impl std::fmt::Display for PoolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh run id: one subject token.
pub fn new_run_id() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_single_subject_tokens() {
        assert!(PoolName::new("gpu-a_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(PoolName::new(bad).is_err(), "{bad:?}");
        }
        let p = PoolName::new("gpu").unwrap();
        assert_eq!(p.out_subject("r1"), "bamboo.pool.gpu.run.r1.out");
        assert_eq!(p.in_subject("r1"), "bamboo.pool.gpu.run.r1.in");
        assert_eq!(p.work_subject(), "bamboo.pool.gpu.work");
        assert!(new_run_id().bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
