//! Child processes in their own process group, so a run can stop everything it
//! started (the program and any grandchildren) and nothing outlives it.

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

/// How long a group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(500);

/// The process group of a spawned child (spawned with `process_group(0)`, so
/// the group id is the child's pid). Dropping it SIGKILLs the group unless
/// [`ProcessGroup::finish`] already cleaned up, so a dropped run future (for
/// example one superseded by the transport) leaves no process behind.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// The group led by `child`; inert when the child has no pid (already reaped).
    pub fn of(child: &Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Self { pgid }
    }

    /// Sends `signal` to every process of the group; a group that is already
    /// gone is not an error.
    pub fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            if let Err(e) = killpg(pgid, signal) {
                if e != nix::errno::Errno::ESRCH {
                    tracing::warn!(pgid = pgid.as_raw(), ?signal, error = %e, "killpg failed");
                }
            }
        }
    }

    /// Stops the group: SIGTERM, up to [`KILL_GRACE`] for the leader to exit,
    /// then SIGKILL for whatever is left, and reaps the leader.
    pub async fn terminate(mut self, child: &mut Child) {
        self.signal(Signal::SIGTERM);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        self.signal(Signal::SIGKILL);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        self.pgid = None;
    }

    /// The leader exited on its own: SIGKILL any grandchildren it left behind
    /// (they would otherwise hold the output pipes open and outlive the run).
    pub fn finish(mut self) {
        self.signal(Signal::SIGKILL);
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Reads a stream to its end, keeping only its last `cap` bytes (lossy UTF-8).
pub async fn read_tail(mut stream: impl AsyncRead + Unpin, cap: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trim at twice the cap so trimming stays amortised O(1).
                if tail.len() > 2 * cap {
                    tail.drain(..tail.len() - cap);
                }
            }
        }
    }
    if tail.len() > cap {
        tail.drain(..tail.len() - cap);
    }
    String::from_utf8_lossy(&tail).into_owned()
}
