//! Buffered stdout that reports a closed reader (`| head -1`) instead of
//! panicking: every write returns [`Closed`] once stdout is gone.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Most output held back while a question waits; past it, output flows
/// again rather than grow without bound.
const HOLD_MAX: usize = 16 * 1024 * 1024;

/// Set while an approval question waits on the terminal: output is held
/// back so the question stays on screen, and released after the answer.
#[derive(Debug, Clone, Default)]
pub struct Hold(Arc<AtomicBool>);

impl Hold {
    /// Holds output back until [`Hold::release`].
    pub fn hold(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Lets held output go (at the next flush).
    pub fn release(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether output is held now.
    pub fn is_held(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Stdout is closed (or failed): stop writing, cancel the children, exit quietly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Buffered stdout; flush before waiting for more events.
pub struct Out {
    w: BufWriter<Box<dyn Write + Send>>,
    closed: bool,
    hold: Hold,
    /// Output written while held, in order.
    held: Vec<u8>,
    /// [`Chunked`]'s buffer between lines.
    chunk: Vec<u8>,
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
            hold: Hold::default(),
            held: Vec::new(),
            chunk: Vec::new(),
        }
    }

    /// Output held back while `hold` is set (a question on the same terminal).
    pub fn held_by(&mut self, hold: Hold) {
        self.hold = hold;
    }

    /// Writes `text` as is (or keeps it while output is held).
    pub fn write(&mut self, text: &str) -> Result<(), Closed> {
        self.write_bytes(text.as_bytes())
    }

    /// [`Out::write`] for text that arrives in pieces (a serializer's
    /// output: it is UTF-8 once whole).
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        if self.hold.is_held() && self.held.len() + bytes.len() <= HOLD_MAX {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        self.write_held()?;
        self.w.write_all(bytes).map_err(|_| self.close())
    }

    /// This output as an [`std::io::Write`], for a serializer to write into
    /// directly rather than through a string (a long answer is not copied
    /// once more). Its many small writes are gathered into pieces of up to
    /// [`CHUNK`] bytes; [`Chunked::finish`] writes the last. A closed stdout
    /// is an error of kind `BrokenPipe`.
    pub fn chunked(&mut self) -> Chunked<'_> {
        let buf = std::mem::take(&mut self.chunk);
        Chunked { out: self, buf }
    }

    /// Sends buffered output on (none while held).
    pub fn flush(&mut self) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        if self.hold.is_held() {
            return Ok(());
        }
        self.write_held()?;
        self.w.flush().map_err(|_| self.close())
    }

    fn write_held(&mut self) -> Result<(), Closed> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.w.write_all(&held).map_err(|_| self.close())
    }

    fn close(&mut self) -> Closed {
        self.closed = true;
        Closed
    }
}

/// Most bytes [`Chunked`] gathers before passing them on.
const CHUNK: usize = 16 * 1024;

/// See [`Out::chunked`].
#[derive(Debug)]
pub struct Chunked<'a> {
    out: &'a mut Out,
    buf: Vec<u8>,
}

impl Chunked<'_> {
    /// Passes on what is gathered.
    pub fn finish(mut self) -> Result<(), Closed> {
        self.pass_on()
    }

    fn pass_on(&mut self) -> Result<(), Closed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.out.write_bytes(&self.buf);
        self.buf.clear();
        r
    }
}

impl Drop for Chunked<'_> {
    fn drop(&mut self) {
        // The buffer goes back for the next line.
        self.buf.clear();
        self.out.chunk = std::mem::take(&mut self.buf);
    }
}

impl Write for Chunked<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.write_all(b).map(|()| b.len())
    }
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        let closed = |Closed| std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        if self.buf.len() + b.len() > CHUNK {
            self.pass_on().map_err(closed)?;
        }
        if b.len() > CHUNK {
            return self.out.write_bytes(b).map_err(closed);
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_written_in_pieces_comes_out_whole_and_in_order() {
        let sink = Shared::default();
        let mut out = Out::new(Box::new(sink.clone()));
        let long = "y".repeat(3 * CHUNK);
        out.write("before ").unwrap();
        let mut w = out.chunked();
        for i in 0..5000 {
            write!(w, "{i},").unwrap();
        }
        w.write_all(long.as_bytes()).unwrap();
        w.write_all(b" end").unwrap();
        w.finish().unwrap();
        out.write("\n").unwrap();
        out.flush().unwrap();
        let numbers: String = (0..5000).map(|i| format!("{i},")).collect();
        let seen = sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            String::from_utf8(seen).unwrap(),
            format!("before {numbers}{long} end\n")
        );
    }

    #[test]
    fn held_output_waits_for_the_release_and_keeps_its_order() {
        let sink = Shared::default();
        let mut out = Out::new(Box::new(sink.clone()));
        let hold = Hold::default();
        out.held_by(hold.clone());
        let seen = || {
            String::from_utf8(sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .unwrap_or_default()
        };
        out.write("one\n").unwrap();
        out.flush().unwrap();
        hold.hold();
        out.write("two\n").unwrap();
        out.flush().unwrap();
        assert_eq!(seen(), "one\n", "nothing passes while held");
        hold.release();
        out.write("three\n").unwrap();
        out.flush().unwrap();
        assert_eq!(seen(), "one\ntwo\nthree\n");
    }
}
