//! The NATS pool's runs in flight, on disk (`<data>/pool-runs/<child>.json`), so an
//! engine that restarts reattaches to them instead of losing them (issue 12):
//! a pool run lives on a remote worker, not in the engine's process.
//!
//! A record is written once the run is queued and rewritten with the run's
//! read position (at most every [`CHECKPOINT_EVERY`], and only after the
//! events read up to it are written to the event logs), so a new engine
//! continues from there with no gap. It is removed when the run ends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bamboo_pool::RunPosition;
use serde::{Deserialize, Serialize};

use crate::store::private::{create_private_dir_all, create_private_file};

/// How often a pool run's read position is made durable while it runs.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// One pool run in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PoolRunRecord {
    /// The child the run is for.
    pub child_id: String,
    /// Its pool.
    pub pool: String,
    /// The run's id in the pool.
    pub run_id: String,
    /// How far the engine read (and logged) the run's frames.
    pub position: RunPosition,
}

/// The directory of pool-run records.
#[derive(Debug)]
pub(crate) struct PoolJournal {
    dir: PathBuf,
}

impl PoolJournal {
    /// The journal under `data_dir`; the directory is made when first written.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pool-runs"),
        }
    }

    fn path(&self, child_id: &str) -> PathBuf {
        self.dir.join(format!("{child_id}.json"))
    }

    /// Writes `rec` atomically (a new file renamed over the old one).
    pub fn save(&self, rec: &PoolRunRecord) -> std::io::Result<()> {
        create_private_dir_all(&self.dir)?;
        let body = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!(".{}.tmp", rec.child_id));
        let mut f = create_private_file(&tmp)?;
        f.write_all(&body)?;
        std::fs::rename(&tmp, self.path(&rec.child_id))
    }

    /// Forgets the run of `child_id` (it ended).
    pub fn remove(&self, child_id: &str) {
        match std::fs::remove_file(self.path(child_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(child = child_id, error = %e, "cannot remove the pool-run record")
            }
        }
    }

    /// Every record; unreadable ones are reported and skipped.
    pub fn load_all(&self) -> Vec<PoolRunRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(rec) => out.push(rec),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable pool-run record")
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let j = PoolJournal::new(dir.path());
        assert!(j.load_all().is_empty(), "no directory yet: nothing");
        let mut rec = PoolRunRecord {
            child_id: "c1".into(),
            pool: "p".into(),
            run_id: "r1".into(),
            position: RunPosition::default(),
        };
        j.save(&rec).unwrap();
        rec.position = RunPosition { seq: 7, lines: 3 };
        j.save(&rec).unwrap();
        std::fs::write(dir.path().join("pool-runs/bad.json"), "{").unwrap();
        assert_eq!(j.load_all(), vec![rec]);
        j.remove("c1");
        j.remove("c1");
        assert!(j.load_all().is_empty());
    }
}
