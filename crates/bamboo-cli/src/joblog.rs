//! `--joblog FILE`: one tab-separated line per child and try, written as
//! each try ends, after a header (like GNU parallel's joblog, with a name,
//! a status and a try number added). Fields never hold a tab or a newline:
//! those become spaces, so each line stays one record.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

/// The header line's fields.
pub const HEADER: [&str; 9] = [
    "Name",
    "Seq",
    "Starttime",
    "JobRuntime",
    "Status",
    "Exitval",
    "Worker",
    "Try",
    "Command",
];

/// One ended try.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The child's display name.
    pub name: &'a str,
    /// Its position among the run's children, from 1.
    pub seq: usize,
    /// When the try started (log time).
    pub start: DateTime<Utc>,
    /// How long it ran.
    pub runtime: Duration,
    /// `completed`, `error`, `timeout`, `cancelled`, ...
    pub status: &'a str,
    /// The cli program's exit code, when known.
    pub exit: Option<i32>,
    /// Where it ran: `local:PID`, `local`, the remote URL, `pool:NAME`.
    pub worker: &'a str,
    /// 1 for the first try.
    pub attempt: u32,
    /// The command line (cli) or the assignment.
    pub command: &'a str,
}

/// The open joblog.
#[derive(Debug)]
pub struct Joblog {
    file: File,
    path: String,
}

impl Joblog {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let mut file = File::create(path).with_context(|| {
            format!(
                "cannot create the --joblog file {}: give a path in a writable directory",
                path.display()
            )
        })?;
        writeln!(file, "{}", HEADER.join("\t"))
            .with_context(|| format!("cannot write the --joblog file {}", path.display()))?;
        Ok(Self {
            file,
            path: path.display().to_string(),
        })
    }

    /// Appends one line; an error names the file (the run goes on).
    pub fn write(&mut self, e: &Entry<'_>) -> Result<(), String> {
        let line = line(e);
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|err| format!("cannot write the --joblog file {}: {err}", self.path))
    }
}

/// One record, with its newline.
pub fn line(e: &Entry<'_>) -> String {
    let start = e.start.timestamp_millis() as f64 / 1000.0;
    let fields = [
        clean(e.name),
        e.seq.to_string(),
        format!("{start:.3}"),
        format!("{:.3}", e.runtime.as_secs_f64()),
        clean(e.status),
        e.exit.map_or_else(|| "-".to_owned(), |c| c.to_string()),
        clean(e.worker),
        e.attempt.to_string(),
        clean(e.command),
    ];
    let mut s = fields.join("\t");
    s.push('\n');
    s
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// The exit code a cli program's error names (`... failed (exit status: 3)`).
pub fn exit_code_in(error: &str) -> Option<i32> {
    let rest = &error[error.find("(exit status: ")? + "(exit status: ".len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// A cli program's command line with `{assignment}` filled in (or the
/// assignment given on stdin, shown as `< assignment`).
pub fn command_line(program: &str, args: &[String], assignment: &str) -> String {
    let mut parts = vec![quote(program)];
    let mut substituted = false;
    for a in args {
        if a.contains("{assignment}") {
            substituted = true;
        }
        parts.push(quote(&a.replace("{assignment}", assignment)));
    }
    let mut s = parts.join(" ");
    if !substituted {
        s.push_str(" < ");
        s.push_str(&quote(assignment));
    }
    s
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_and_no_stray_tabs() {
        let start = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let e = Entry {
            name: "a\tb",
            seq: 3,
            start,
            runtime: Duration::from_millis(1500),
            status: "error",
            exit: Some(3),
            worker: "local:42",
            attempt: 2,
            command: "sh -c 'exit 3'\nx",
        };
        assert_eq!(
            line(&e),
            "a b\t3\t1700000000.123\t1.500\terror\t3\tlocal:42\t2\tsh -c 'exit 3' x\n"
        );
    }

    #[test]
    fn the_exit_code_and_command_line_are_recovered() {
        assert_eq!(
            exit_code_in("cli_adapter program `sh` failed (exit status: 3); stderr"),
            Some(3)
        );
        assert_eq!(exit_code_in("failed (signal: 9 (SIGKILL))"), None);
        assert_eq!(
            command_line("sh", &["-c".into(), "echo {assignment}".into()], "hi"),
            "sh -c 'echo hi'"
        );
        assert_eq!(command_line("cat", &[], "it's"), r"cat < 'it'\''s'");
    }
}
