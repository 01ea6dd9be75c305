//! Owner-only files and directories: the store holds whole conversations, so
//! everything it creates is 0700 (directories) or 0600 (files) whatever the
//! process umask, and engine-owned paths found wider are narrowed.
//!
//! Reusable by other engine code that persists data (an event log, ...).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of every directory the engine creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the engine creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `path` and any missing parents as 0700 directories. `path` itself
/// ends up exactly 0700 even when it existed already or the umask stripped
/// owner bits, so only pass directories the engine owns. Parents that
/// already existed are left alone (they may be shared, like `/tmp`).
pub(crate) fn create_private_dir_all(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p);
        cur = p.parent();
    }
    for dir in missing.into_iter().rev() {
        match private_dir_builder().create(dir) {
            Ok(()) => set_mode(dir, DIR_MODE)?,
            // Another process made it in between: still ours to narrow below.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    narrow(path, DIR_MODE)
}

/// Makes the data directory `path` owner-only where it is the engine's: it
/// is created 0700 when missing, and narrowed to 0700 when it is empty (made
/// for us, like a temporary directory) or holds an earlier engine's
/// `engine.lock`. Any other existing directory may be shared (`$HOME`,
/// `/tmp`) and keeps its mode; the owner-only subdirectories keep the
/// sessions private anyway. Narrowing is best effort: a directory we may not
/// chmod is used as it is, with a warning.
pub(crate) fn claim_data_dir(path: &Path) -> io::Result<()> {
    let fresh = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create_private_dir_all(path),
        Err(e) => return Err(e),
    };
    if fresh || path.join("engine.lock").exists() {
        if let Err(e) = narrow(path, DIR_MODE) {
            tracing::warn!(dir = %path.display(), error = %e,
                "cannot make the data directory owner-only (0700); its sessions/ stays private");
        }
    }
    Ok(())
}

/// `OpenOptions` that create files as 0600 (the umask can only narrow it;
/// [`open_private`] also fixes a file it finds wider).
pub(crate) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// Opens `path` with `options` (which should come from
/// [`private_file_options`]) and makes the file exactly 0600: a new file
/// whatever the umask did, and an existing one left wider by an earlier
/// version.
pub(crate) fn open_private(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(file)
}

/// Creates (or truncates) `path` as a 0600 file open for writing.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = private_file_options();
    options.write(true).create(true).truncate(true);
    open_private(&options, path)
}

fn private_dir_builder() -> std::fs::DirBuilder {
    #[allow(unused_mut)]
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder
}

/// Sets `path` to exactly `mode` when its permission bits differ.
fn narrow(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o777 != mode {
            set_mode(path, mode)?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
