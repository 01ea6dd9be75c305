//! Buffered stdout that reports a closed reader (`| head -1`) instead of
//! panicking: every write returns [`Closed`] once stdout is gone.

use std::io::{BufWriter, Write};

/// Stdout is closed (or failed): stop writing, cancel the children, exit quietly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Buffered stdout; flush before waiting for more events.
pub struct Out {
    w: BufWriter<Box<dyn Write + Send>>,
    closed: bool,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out").field("closed", &self.closed).finish()
    }
}

impl Default for Out {
    fn default() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }
}

impl Out {
    /// Output to `w` (stdout, or a buffer in tests).
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        Self {
            w: BufWriter::with_capacity(64 * 1024, w),
            closed: false,
        }
    }

    /// Writes `text` as is.
    pub fn write(&mut self, text: &str) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        self.w.write_all(text.as_bytes()).map_err(|_| self.close())
    }

    /// Sends buffered output on.
    pub fn flush(&mut self) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        self.w.flush().map_err(|_| self.close())
    }

    fn close(&mut self) -> Closed {
        self.closed = true;
        Closed
    }
}

/// True when stdout is a pipe whose reader has gone (`| head -1` finished):
/// noticed without writing, so a quiet run still stops promptly.
pub fn stdout_reader_gone() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
        _ => false,
    }
}

/// Writes one line to stderr; a closed stderr is ignored (unlike `eprintln!`,
/// which would panic).
pub fn to_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
