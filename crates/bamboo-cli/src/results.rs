//! `--results DIR`: per child a directory `DIR/<name>/` with `stdout` (its
//! streamed text), `stderr` (its `stderr` events' lines), `result` (its final
//! answer, when it completed), `events.ndjson` (every logged event about it
//! and its nested sessions, as `--json` prints them) and `status.json`.
//! `stdout`, `stderr`, `result` and `status.json` hold the latest try,
//! `events.ndjson` every try. A try's output goes to the files as it comes
//! (its text to `stdout.part` and `stderr.part`, renamed when the try ends),
//! so a long stream costs no memory here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bamboo_domain::AgentEvent;
use serde::Serialize;

use super::children::Child;

/// The open results directory.
#[derive(Debug)]
pub struct Results {
    dir: PathBuf,
    open: HashMap<usize, Open>,
}

/// One child's try in progress: its files, or why they could not be
/// written (said once, when the try ends).
#[derive(Debug)]
struct Open {
    dir: PathBuf,
    files: Result<Files, String>,
}

#[derive(Debug)]
struct Files {
    stdout: BufWriter<File>,
    stderr: BufWriter<File>,
    events: BufWriter<File>,
}

impl Files {
    fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.ndjson"))?;
        Ok(Self {
            stdout: BufWriter::new(File::create(dir.join(STDOUT_PART))?),
            stderr: BufWriter::new(File::create(dir.join(STDERR_PART))?),
            events: BufWriter::new(events),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdout.flush()?;
        self.stderr.flush()?;
        self.events.flush()
    }
}

/// Where a try's text goes until the try ends.
const STDOUT_PART: &str = "stdout.part";
/// Where a try's `stderr` lines go until the try ends.
const STDERR_PART: &str = "stderr.part";

/// `status.json`.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    /// The child's display name.
    pub name: &'a str,
    /// Its session id.
    pub child_id: &'a str,
    /// How its latest try ended.
    pub status: String,
    /// Tries so far (1 without retries).
    pub tries: u32,
    /// A cli program's exit code, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The latest try's start and end (log time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// See `started_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The latest try's run time.
    pub duration_ms: u64,
    /// Why it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// What it was asked to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment: Option<&'a str>,
    /// Where the latest try ran (as in the job log).
    pub worker: &'a str,
}

impl Results {
    /// Creates `dir` (and its parents) if needed.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the --results directory {}: give a path where you may write",
                dir.display()
            )
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            open: HashMap::new(),
        })
    }

    /// Writes one event about child `top` (named `name`): its NDJSON line
    /// (`json_line` writes it, with its newline, straight into the file),
    /// and its text when it is the child's own.
    pub fn event(
        &mut self,
        top: usize,
        name: &str,
        is_top: bool,
        event: &AgentEvent,
        json_line: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    ) {
        let root = &self.dir;
        let open = self.open.entry(top).or_insert_with(|| {
            let dir = root.join(dir_name(name));
            let files = Files::open(&dir).map_err(|e| e.to_string());
            Open { dir, files }
        });
        let Ok(files) = &mut open.files else {
            return;
        };
        let mut wrote = json_line(&mut files.events);
        if let AgentEvent::SubAgentEvent { event, .. } = event {
            wrote = wrote.and_then(|_| match &**event {
                AgentEvent::Token { content } if is_top => {
                    files.stdout.write_all(content.as_bytes())
                }
                AgentEvent::Stderr { line } if is_top => files
                    .stderr
                    .write_all(line.as_bytes())
                    .and_then(|_| files.stderr.write_all(b"\n")),
                _ => Ok(()),
            });
        }
        if let Err(e) = wrote {
            open.files = Err(e.to_string());
        }
    }

    /// Finishes child `top`'s files at the end of a try; `result` is its
    /// final answer.
    pub fn try_ended(
        &mut self,
        top: usize,
        child: &Child,
        result: Option<&str>,
        status: &Status<'_>,
    ) -> Result<(), String> {
        let (dir, files) = match self.open.remove(&top) {
            Some(open) => (open.dir, open.files),
            // A try with no event (it never started): empty text files.
            None => {
                let dir = self.dir.join(dir_name(&child.name));
                let files = Files::open(&dir).map_err(|e| e.to_string());
                (dir, files)
            }
        };
        let what = |e: String| {
            format!(
                "cannot write the --results files of [{}] in {}: {e}",
                child.name,
                dir.display()
            )
        };
        let mut files = files.map_err(what)?;
        let io = |e: std::io::Error| what(e.to_string());
        files.flush().map_err(io)?;
        drop(files);
        std::fs::rename(dir.join(STDOUT_PART), dir.join("stdout")).map_err(io)?;
        std::fs::rename(dir.join(STDERR_PART), dir.join("stderr")).map_err(io)?;
        std::fs::write(dir.join("result"), result.unwrap_or("")).map_err(io)?;
        let mut json = serde_json::to_string_pretty(status).unwrap_or_default();
        json.push('\n');
        std::fs::write(dir.join("status.json"), json).map_err(io)?;
        Ok(())
    }
}

/// Names are short and unique already; only a path separator or a leading
/// dot could escape or hide the directory.
fn dir_name(name: &str) -> String {
    let n = name.replace(['/', '\\', '\0'], "_");
    match n.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(name: &str) -> Child {
        Child {
            id: "id".into(),
            name: name.into(),
            phase: super::super::children::Phase::Done(bamboo_domain::CompletionStatus::Completed),
            started: None,
            ended: None,
            tokens: 0,
            error: None,
            result: Some("done".into()),
            assignment: None,
            worker: None,
            usage: None,
            worktree: None,
        }
    }

    fn status(name: &str) -> Status<'_> {
        Status {
            name,
            child_id: "id",
            status: "completed".into(),
            tries: 1,
            exit_code: None,
            started_at: None,
            ended_at: None,
            duration_ms: 0,
            error: None,
            assignment: None,
            worker: "local",
        }
    }

    fn own(event: AgentEvent) -> AgentEvent {
        AgentEvent::SubAgentEvent {
            parent_session_id: "root".into(),
            child_session_id: "id".into(),
            event: Box::new(event),
        }
    }

    /// An event's NDJSON line, as the front door writes it.
    fn line(f: &mut BufWriter<File>) -> std::io::Result<()> {
        f.write_all(b"{}\n")
    }

    #[test]
    fn a_tries_text_is_on_disk_as_it_comes_and_complete_when_it_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Results::create(tmp.path()).unwrap();
        let d = tmp.path().join("job");
        for _ in 0..10_000 {
            r.event(0, "job", true, &own(AgentEvent::token("ab")), line);
        }
        r.event(
            0,
            "job",
            true,
            &own(AgentEvent::Stderr {
                line: "warn".into(),
            }),
            line,
        );
        // Streamed, not kept: past the writer's buffer it is in the file.
        let part = std::fs::read_to_string(d.join(STDOUT_PART)).unwrap();
        assert!(part.len() >= 10_000, "{} bytes on disk so far", part.len());
        r.try_ended(0, &child("job"), Some("done"), &status("job"))
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("stdout"), "ab".repeat(10_000));
        assert_eq!(read("stderr"), "warn\n");
        assert_eq!(read("result"), "done");
        assert_eq!(read("events.ndjson").lines().count(), 10_001);
        assert!(!d.join(STDOUT_PART).exists() && !d.join(STDERR_PART).exists());
        // A second try replaces the text and adds to the events.
        r.event(0, "job", true, &own(AgentEvent::token("again")), line);
        r.try_ended(0, &child("job"), Some("done"), &status("job"))
            .unwrap();
        assert_eq!(read("stdout"), "again");
        assert_eq!(read("stderr"), "");
        assert_eq!(read("events.ndjson").lines().count(), 10_002);
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(dir_name("fix-it"), "fix-it");
        assert_eq!(dir_name("../x"), "_._x");
        assert_eq!(dir_name("a/b"), "a_b");
    }
}
