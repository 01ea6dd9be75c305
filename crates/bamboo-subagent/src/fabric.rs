//! The file discovery fabric (F6, protocol.md section 3): one JSON record per
//! live actor in a directory.
//!
//! Writes are atomic (a dot-named temporary file in the same directory, then a
//! rename), so a reader sees a whole record or none. Readers skip dot files and
//! non-`.json` names, treat unreadable or corrupt files as absent, and filter out
//! stale leases.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::record::AgentRecord;

/// A fabric operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// The fabric directory could not be created.
    #[error(
        "cannot create fabric directory {path}: {source} (check the path and its permissions)"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be written.
    #[error("cannot write fabric record {path}: {source} (check free space and permissions)")]
    Write {
        /// The record file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not be removed.
    #[error("cannot remove fabric record {path}: {source}")]
    Remove {
        /// The record file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A discovery fabric rooted at one directory.
#[derive(Debug, Clone)]
pub struct Fabric {
    dir: PathBuf,
}

impl Fabric {
    /// A fabric in `dir` (not created until [`Fabric::ensure_dir`] or a publish).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The fabric directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the record of `agent_id` lives.
    pub fn record_path(&self, agent_id: &str) -> PathBuf {
        self.dir.join(format!("{agent_id}.json"))
    }

    /// Creates the directory (and parents) with owner-only permissions: records
    /// name loopback endpoints that other local users have no business finding.
    pub fn ensure_dir(&self) -> Result<(), FabricError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&self.dir)
            .map_err(|source| FabricError::CreateDir {
                path: self.dir.clone(),
                source,
            })
    }

    /// Publishes (or renews) a record atomically.
    pub fn publish(&self, record: &AgentRecord) -> Result<(), FabricError> {
        self.ensure_dir()?;
        let path = self.record_path(&record.agent_id);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", record.agent_id, std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            // Serializing a record cannot fail: plain strings, numbers and dates.
            f.write_all(&serde_json::to_vec(record).unwrap_or_default())?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            FabricError::Write {
                path: path.clone(),
                source,
            }
        })
    }

    /// Removes a record; a missing record is not an error.
    pub fn withdraw(&self, agent_id: &str) -> Result<(), FabricError> {
        let path = self.record_path(agent_id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FabricError::Remove { path, source }),
        }
    }

    /// The live record of `agent_id`, if there is one.
    pub fn resolve(&self, agent_id: &str) -> Option<AgentRecord> {
        read_record(&self.record_path(agent_id)).filter(|r| r.is_live_at(Utc::now()))
    }

    /// Every live record, sorted by agent id.
    pub fn discover(&self) -> Vec<AgentRecord> {
        let now = Utc::now();
        let mut out: Vec<AgentRecord> = self
            .record_files()
            .filter_map(|p| read_record(&p))
            .filter(|r| r.is_live_at(now))
            .collect();
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }

    /// Deletes stale and corrupt records; returns how many were removed.
    pub fn gc(&self) -> usize {
        let now = Utc::now();
        self.record_files()
            .filter(|p| !read_record(p).is_some_and(|r| r.is_live_at(now)))
            .filter(|p| fs::remove_file(p).is_ok())
            .count()
    }

    fn record_files(&self) -> impl Iterator<Item = PathBuf> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"))
            })
    }
}

fn read_record(path: &Path) -> Option<AgentRecord> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn record(id: &str, lease_secs: i64) -> AgentRecord {
        let now = Utc::now();
        AgentRecord {
            agent_id: id.into(),
            role: "r".into(),
            labels: vec![],
            endpoint: "ws://127.0.0.1:1".into(),
            pid: 7,
            version: "t".into(),
            started_at: now,
            lease_expires_at: now + Duration::seconds(lease_secs),
        }
    }

    #[test]
    fn publish_resolve_discover_withdraw() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fabric::new(tmp.path().join("nested/agents"));
        f.publish(&record("b", 60)).unwrap();
        f.publish(&record("a", 60)).unwrap();
        assert_eq!(f.resolve("a").unwrap().agent_id, "a");
        let ids: Vec<_> = f.discover().into_iter().map(|r| r.agent_id).collect();
        assert_eq!(ids, ["a", "b"]);
        f.withdraw("a").unwrap();
        f.withdraw("a").unwrap();
        assert!(f.resolve("a").is_none());
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(f.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn directory_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let f = Fabric::new(tmp.path().join("agents"));
        f.ensure_dir().unwrap();
        let mode = fs::metadata(f.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn stale_corrupt_and_foreign_files_are_invisible_and_collected() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fabric::new(tmp.path());
        f.publish(&record("live", 60)).unwrap();
        f.publish(&record("stale", -5)).unwrap();
        fs::write(tmp.path().join("corrupt.json"), b"{not json").unwrap();
        fs::write(
            tmp.path().join(".hidden.json"),
            serde_json::to_vec(&record("hidden", 60)).unwrap(),
        )
        .unwrap();
        fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let ids: Vec<_> = f.discover().into_iter().map(|r| r.agent_id).collect();
        assert_eq!(ids, ["live"]);
        assert!(f.resolve("stale").is_none());
        assert!(f.resolve("corrupt").is_none());
        assert_eq!(f.gc(), 2);
        assert!(!tmp.path().join("stale.json").exists());
        assert!(!tmp.path().join("corrupt.json").exists());
        assert!(tmp.path().join("live.json").exists());
        assert!(tmp.path().join("notes.txt").exists());
    }
}
