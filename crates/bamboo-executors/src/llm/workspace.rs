//! Confining file paths to the workspace: every path a tool touches resolves
//! (symlinks included) to somewhere under the canonical workspace root.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// The path resolves outside the workspace.
    #[error("path {0:?} is outside the workspace: use a path inside it")]
    Outside(String),
    /// The path does not exist.
    #[error("path {0:?} does not exist in the workspace")]
    Missing(String),
    /// The path is empty or otherwise unusable.
    #[error("path {0:?} is not usable: {1}")]
    Invalid(String, String),
}

/// The workspace root, canonical.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Opens the workspace at `path` (it must exist).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: path.canonicalize()?,
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn joined(&self, path: &str) -> Result<PathBuf, PathError> {
        if path.trim().is_empty() {
            return Err(PathError::Invalid(path.into(), "it is empty".into()));
        }
        if path.contains('\0') {
            return Err(PathError::Invalid(
                path.into(),
                "it contains a NUL byte".into(),
            ));
        }
        Ok(self.root.join(path))
    }

    fn inside(&self, resolved: PathBuf, asked: &str) -> Result<PathBuf, PathError> {
        if resolved.starts_with(&self.root) {
            Ok(resolved)
        } else {
            Err(PathError::Outside(asked.into()))
        }
    }

    /// An existing path, resolved through symlinks, inside the workspace.
    pub fn existing(&self, path: &str) -> Result<PathBuf, PathError> {
        let joined = self.joined(path)?;
        match joined.canonicalize() {
            Ok(p) => self.inside(p, path),
            Err(_) => {
                // Say "outside" rather than "missing" for paths that would
                // escape anyway, so probing reveals nothing beyond the root.
                self.for_write(path)?;
                Err(PathError::Missing(path.into()))
            }
        }
    }

    /// A path that may not exist yet (for writing): its deepest existing
    /// ancestor must resolve inside the workspace and the rest must be plain
    /// names (no `..`). An existing target is resolved through symlinks.
    pub fn for_write(&self, path: &str) -> Result<PathBuf, PathError> {
        let joined = self.joined(path)?;
        if let Ok(p) = joined.canonicalize() {
            return self.inside(p, path);
        }
        let mut existing = joined.as_path();
        let mut tail: Vec<&std::ffi::OsStr> = Vec::new();
        loop {
            if existing.symlink_metadata().is_ok() {
                break;
            }
            match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(Component::Normal(name))) => {
                    tail.push(name);
                    existing = parent;
                }
                _ => return Err(PathError::Outside(path.into())),
            }
        }
        // A dangling symlink as the deepest existing piece: refuse, its target
        // could be anywhere.
        let base = existing
            .canonicalize()
            .map_err(|_| PathError::Outside(path.into()))?;
        let base = self.inside(base, path)?;
        Ok(tail.iter().rev().fold(base, |acc, name| acc.join(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_and_escapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret.txt"), "s").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a.txt"), "a").expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        let ws = Workspace::open(dir.path()).expect("open");

        assert!(ws.existing("sub/a.txt").is_ok());
        assert!(ws.existing("sub/../sub/a.txt").is_ok());
        assert!(ws.existing(".").is_ok());
        let abs_inside = ws.root().join("sub/a.txt");
        assert!(ws.existing(&abs_inside.to_string_lossy()).is_ok());
        assert!(matches!(ws.existing("../x"), Err(PathError::Outside(_))));
        assert!(matches!(
            ws.existing("/etc/passwd"),
            Err(PathError::Outside(_))
        ));
        assert!(matches!(
            ws.existing("link/secret.txt"),
            Err(PathError::Outside(_))
        ));
        assert!(matches!(
            ws.existing("nope.txt"),
            Err(PathError::Missing(_))
        ));

        assert_eq!(
            ws.for_write("new/deep/f.txt").expect("ok"),
            ws.root().join("new/deep/f.txt")
        );
        assert!(matches!(
            ws.for_write("new/../../x"),
            Err(PathError::Outside(_))
        ));
        assert!(matches!(
            ws.for_write("link/new.txt"),
            Err(PathError::Outside(_))
        ));
        assert!(matches!(
            ws.for_write("/tmp/elsewhere.txt"),
            Err(PathError::Outside(_))
        ));
        assert!(matches!(ws.for_write(""), Err(PathError::Invalid(..))));
    }
}
