//! `--results DIR`: per child a directory `DIR/<name>/` with `stdout` (its
//! streamed text), `stderr` (its `stderr` events' lines), `result` (its final
//! answer, when it completed), `events.ndjson` (every logged event about it
//! and its nested sessions, as `--json` prints them) and `status.json`.
//! What a try produces is kept in memory and written when the try ends:
//! `stdout`, `stderr`, `result` and `status.json` then hold the latest try,
//! `events.ndjson` every try.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bamboo_domain::AgentEvent;
use serde::Serialize;

use super::children::Child;

/// The open results directory.
#[derive(Debug)]
pub struct Results {
    dir: PathBuf,
    open: HashMap<usize, Buffers>,
}

#[derive(Debug, Default)]
struct Buffers {
    stdout: String,
    stderr: String,
    events: String,
}

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

    /// Keeps one event about child `top`: its NDJSON line (`json_line`,
    /// without newline), and its text when it is the child's own.
    pub fn event(&mut self, top: usize, is_top: bool, event: &AgentEvent, json_line: &str) {
        let b = self.open.entry(top).or_default();
        b.events.push_str(json_line);
        b.events.push('\n');
        let AgentEvent::SubAgentEvent { event, .. } = event else {
            return;
        };
        match &**event {
            AgentEvent::Token { content } if is_top => b.stdout.push_str(content),
            AgentEvent::Stderr { line } if is_top => {
                b.stderr.push_str(line);
                b.stderr.push('\n');
            }
            _ => {}
        }
    }

    /// Writes child `top`'s files at the end of a try.
    pub fn try_ended(
        &mut self,
        top: usize,
        child: &Child,
        status: &Status<'_>,
    ) -> Result<(), String> {
        let b = self.open.remove(&top).unwrap_or_default();
        let dir = self.dir.join(dir_name(&child.name));
        let what = |e: std::io::Error| {
            format!(
                "cannot write the --results files of [{}] in {}: {e}",
                child.name,
                dir.display()
            )
        };
        std::fs::create_dir_all(&dir).map_err(what)?;
        std::fs::write(dir.join("stdout"), &b.stdout).map_err(what)?;
        std::fs::write(dir.join("stderr"), &b.stderr).map_err(what)?;
        std::fs::write(dir.join("result"), child.result.as_deref().unwrap_or("")).map_err(what)?;
        let mut events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.ndjson"))
            .map_err(what)?;
        events.write_all(b.events.as_bytes()).map_err(what)?;
        let mut json = serde_json::to_string_pretty(status).unwrap_or_default();
        json.push('\n');
        std::fs::write(dir.join("status.json"), json).map_err(what)?;
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

    #[test]
    fn names_cannot_leave_the_directory() {
        assert_eq!(dir_name("fix-it"), "fix-it");
        assert_eq!(dir_name("../x"), "_._x");
        assert_eq!(dir_name("a/b"), "a_b");
    }
}
