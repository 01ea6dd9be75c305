//! Paging long text for a person: through `$PAGER` (default `less`, with
//! `LESS=FRX` unless set: quit if it fits one screen, keep colours, leave
//! the text on screen) when stdout is a terminal; printed as it is
//! otherwise, or when the pager cannot be started. Text is written as it is
//! made, so a long one starts showing at once and is never held whole.

use std::io::{BufWriter, IsTerminal as _, Write};
use std::process::{Child, Command, Stdio};

/// Where text for a person goes: the pager's input, or stdout.
pub struct Paged {
    out: BufWriter<Box<dyn Write + Send>>,
    pager: Option<Child>,
}

impl Paged {
    /// Output through the pager when `page` and stdout is a terminal, else
    /// straight to stdout.
    pub fn start(page: bool) -> Self {
        let mut pager = if page && std::io::stdout().is_terminal() {
            spawn_pager()
        } else {
            None
        };
        let out: Box<dyn Write + Send> = match pager.as_mut().and_then(|p| p.stdin.take()) {
            Some(stdin) => Box::new(stdin),
            None => Box::new(std::io::stdout()),
        };
        Self {
            out: BufWriter::with_capacity(64 * 1024, out),
            pager,
        }
    }

    /// The writer. A reader that went away early (`q` in the pager,
    /// `| head`) makes writes fail with [`std::io::ErrorKind::BrokenPipe`]:
    /// see [`quits_early`].
    pub fn out(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    /// Writes what is buffered and waits for the pager to quit.
    ///
    /// # Errors
    /// The output could not be written (other than its reader going away).
    pub fn finish(self) -> std::io::Result<()> {
        let Self { mut out, pager } = self;
        let flushed = out.flush();
        drop(out);
        // The pager's input is closed here (dropped), so it sees the end.
        if let Some(mut pager) = pager {
            let _ = pager.wait();
        }
        match flushed {
            Err(e) if !quits_early(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for Paged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paged")
            .field("pager", &self.pager.as_ref().map(Child::id))
            .finish_non_exhaustive()
    }
}

/// Whether a write failed because its reader stopped reading (a pager's
/// `q`, `| head`): not worth an error.
pub fn quits_early(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

fn spawn_pager() -> Option<Child> {
    let pager = std::env::var("PAGER").unwrap_or_else(|_| "less".to_owned());
    // `PAGER=` or `PAGER=cat` asks for no pager.
    if pager.trim().is_empty() || pager.trim() == "cat" {
        return None;
    }
    let mut command = Command::new("sh");
    // Through the shell, as git and man do: `PAGER="less -S"` has arguments.
    command.arg("-c").arg(&pager).stdin(Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        command.env("LESS", "FRX");
    }
    match command.spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(pager = %pager, error = %e, "cannot start the pager; printing instead");
            None
        }
    }
}

/// Shows `text` through the pager when stdout is a terminal, else prints it.
pub fn page(text: &str) {
    let mut paged = Paged::start(true);
    // Quitting the pager early is not an error; nothing else is left to say.
    let _ = paged.out().write_all(text.as_bytes());
    let _ = paged.finish();
}
