//! The temporary data directory and its reaper. The directory
//! (`$TMPDIR/bamboo-run-*`, mode 0700) holds session data, so it must go on
//! every exit path, SIGKILL included. At the start a tiny reaper process (this
//! binary, hidden subcommand [`REAP_COMMAND`]) is started in its own process
//! group with the read end of a pipe as stdin; only the front door holds the
//! write end. When the front door exits, however it exits, the pipe closes,
//! the reaper removes the directory and exits.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// The hidden subcommand that runs the reaper.
pub const REAP_COMMAND: &str = "__reap-tempdir";
/// Prefix of the directory's name; the reaper removes nothing else.
const PREFIX: &str = "bamboo-run-";

/// The temporary data directory, removed on drop and by the reaper.
#[derive(Debug)]
pub struct TempData {
    dir: Option<tempfile::TempDir>,
    lifeline: Option<std::io::PipeWriter>,
}

impl TempData {
    /// Creates the directory and starts its reaper.
    pub fn create() -> anyhow::Result<Self> {
        // Session data is private: 0700 from the start.
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .context("cannot create a temporary data directory: check that TMPDIR is writable, or pass --data-dir")?;
        let lifeline = start_reaper(dir.path())?;
        Ok(Self {
            dir: Some(dir),
            lifeline: Some(lifeline),
        })
    }

    /// The directory.
    pub fn path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    /// Removes the directory now (before a hard exit skips destructors) and
    /// tells the reaper it has nothing left to wait for.
    pub fn remove_now(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
        if let Some(mut lifeline) = self.lifeline.take() {
            // One byte means "removed already": the reaper exits at once.
            let _ = std::io::Write::write_all(&mut lifeline, b"x");
        }
    }
}

impl Drop for TempData {
    fn drop(&mut self) {
        self.remove_now();
    }
}

/// Starts the reaper; returns the pipe end whose closing sets it off.
fn start_reaper(dir: &Path) -> anyhow::Result<std::io::PipeWriter> {
    let exe = std::env::current_exe()
        .context("cannot find this program's own path to start the temp-dir reaper")?;
    // std's pipe ends are close-on-exec: workers never inherit the write end.
    let (reader, writer) =
        std::io::pipe().context("cannot create a pipe for the temp-dir reaper")?;
    std::os::unix::process::CommandExt::process_group(
        Command::new(exe)
            .arg(REAP_COMMAND)
            .arg(dir)
            .stdin(Stdio::from(reader))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        // Its own group: a Ctrl-C for the front door's group must not stop it.
        0,
    )
    .spawn()
    .context(
        "cannot start the temp-dir reaper (this program with the hidden subcommand __reap-tempdir)",
    )?;
    Ok(writer)
}

/// The reaper's body: waits for stdin to close, then removes `dir`. Returns
/// the process exit code.
pub fn reap(dir: &Path) -> u8 {
    let named_ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX));
    if !named_ours {
        eprintln!(
            "bamboo-worker {REAP_COMMAND}: refusing to remove {}: not a {PREFIX}* directory",
            dir.display()
        );
        return 2;
    }
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    let mut told_done = false;
    while let Ok(n @ 1..) = stdin.read(&mut buf) {
        told_done |= n > 0;
    }
    let sweeps = if told_done { 1 } else { 8 };
    // After a kill, workers may write a last file while they exit (within
    // about a second): sweep again briefly.
    for i in 0..sweeps {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(250));
        }
        if dir.exists() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    u8::from(dir.exists())
}
