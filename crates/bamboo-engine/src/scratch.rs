//! The private temporary data directory of an ephemeral engine
//! ([`crate::EngineBuilder::ephemeral`]).

use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::EngineError;

/// A data directory of its own (mode 0700) under the system's temporary
/// directory: removed by [`Scratch::remove`] at shutdown, or when the last
/// engine handle is dropped without a shutdown.
#[derive(Debug)]
pub(crate) struct Scratch(Mutex<Option<tempfile::TempDir>>);

impl Scratch {
    /// Creates the directory.
    pub fn create() -> Result<(Self, PathBuf), EngineError> {
        let dir = tempfile::Builder::new()
            .prefix("bamboo-engine-")
            .tempdir()
            .map_err(|e| {
                EngineError::Config(format!(
                    "creating a temporary data directory failed ({e}): check that TMPDIR is writable, or give data_dir(path)"
                ))
            })?;
        let path = dir.path().to_path_buf();
        Ok((Self(Mutex::new(Some(dir))), path))
    }

    /// Removes the directory and everything in it (once; later calls do
    /// nothing).
    pub fn remove(&self) {
        let dir = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(dir) = dir {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!(dir = %path.display(), "removing the engine's temporary data directory failed: {e}");
            }
        }
    }
}
