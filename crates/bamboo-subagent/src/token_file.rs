//! The bearer token file an operator gives `serve`, `run --remote` and
//! `mcp --http`: read once, refused when others may read it.

use std::path::{Path, PathBuf};

use crate::Secret;

/// Why a token file cannot be used; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read the token file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error("the token file {shown} is readable by group or others (mode {mode:03o}): run chmod 600 {shown}", shown = path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no token.
    #[error("the token file {} is empty: put a long random token in it (e.g. openssl rand -hex 32)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the token in `path` (surrounding whitespace trimmed), refusing a
/// file that group or others may read, or an empty one.
pub fn read_token_file(path: &Path) -> Result<Secret, TokenFileError> {
    let unreadable = |source| TokenFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn refuses_open_or_empty_files_and_trims_the_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap().expose(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = read_token_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read the token file"), "{err}");
    }
}
