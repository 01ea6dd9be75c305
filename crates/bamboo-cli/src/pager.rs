//! Paging long text for a person: through `$PAGER` (default `less`, with
//! `LESS=FRX` unless set: quit if it fits one screen, keep colours, leave
//! the text on screen) when stdout is a terminal; printed as it is
//! otherwise, or when the pager cannot be started.

use std::io::{IsTerminal as _, Write as _};
use std::process::{Command, Stdio};

/// Shows `text` through the pager when stdout is a terminal, else prints it.
pub fn page(text: &str) {
    if !std::io::stdout().is_terminal() {
        return super::sessions::emit(text);
    }
    let pager = std::env::var("PAGER").unwrap_or_else(|_| "less".to_owned());
    // `PAGER=` or `PAGER=cat` asks for no pager.
    if pager.trim().is_empty() || pager.trim() == "cat" {
        return super::sessions::emit(text);
    }
    let mut command = Command::new("sh");
    // Through the shell, as git and man do: `PAGER="less -S"` has arguments.
    command.arg("-c").arg(&pager).stdin(Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        command.env("LESS", "FRX");
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(pager = %pager, error = %e, "cannot start the pager; printing instead");
            return super::sessions::emit(text);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A pager quit early (`q`) closes its stdin: not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    let _ = child.wait();
}
