//! `--json`: NDJSON on stdout, one object per logged event, then one summary
//! object. The schema is documented in docs/operations.md ("JSON output").

use std::time::Instant;

use serde::Serialize;

use super::children::{Child, Phase, Who};
use super::out::{Closed, Out};

/// One event line.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    kind: &'static str,
    seq: u64,
    time: chrono::DateTime<chrono::Utc>,
    child_id: Option<&'a str>,
    name: Option<&'a str>,
    event: &'a bamboo_domain::AgentEvent,
}

/// One child in the summary.
#[derive(Debug, Serialize)]
struct ChildLine<'a> {
    child_id: &'a str,
    name: &'a str,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    assignment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    duration_ms: u64,
    tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// A cli program's exit code, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// Tokens, cache tokens, cost, turns and tool calls, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<bamboo_domain::TokenUsage>,
    /// Its git worktree: branch, commit, changed files (`--worktree`).
    #[serde(skip_serializing_if = "Option::is_none")]
    worktree: Option<&'a bamboo_domain::WorktreeOutcome>,
}

/// The last line.
#[derive(Debug, Serialize)]
struct SummaryLine<'a> {
    kind: &'static str,
    root_id: &'a str,
    exit_code: u8,
    interrupted: bool,
    total: usize,
    completed: usize,
    duration_ms: u64,
    /// The root's total over its children, when any reported usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<bamboo_domain::TokenUsage>,
    children: Vec<ChildLine<'a>>,
}

/// Writes one event line; `who` is `None` for events about no child
/// (e.g. `events_truncated`).
pub fn event(
    out: &mut Out,
    seq: u64,
    time: chrono::DateTime<chrono::Utc>,
    who: Option<&Who>,
    event: &bamboo_domain::AgentEvent,
) -> Result<(), Closed> {
    let line = EventLine {
        kind: "event",
        seq,
        time,
        child_id: who.map(|w| w.session_id.as_str()),
        name: who.map(|w| w.label.as_str()),
        event,
    };
    write_line(out, &line)
}

/// Writes one event line, with its newline, to `w` (for `--results`).
pub fn write_event_line(
    w: &mut impl std::io::Write,
    seq: u64,
    time: chrono::DateTime<chrono::Utc>,
    who: Option<&Who>,
    event: &bamboo_domain::AgentEvent,
) -> std::io::Result<()> {
    let line = EventLine {
        kind: "event",
        seq,
        time,
        child_id: who.map(|w| w.session_id.as_str()),
        name: who.map(|w| w.label.as_str()),
        event,
    };
    serde_json::to_writer(&mut *w, &line)?;
    w.write_all(b"\n")
}

/// Writes the summary line.
pub fn summary(
    out: &mut Out,
    root_id: &str,
    cli: bool,
    children: &[Child],
    exit_code: u8,
    interrupted: bool,
    started: Instant,
) -> Result<(), Closed> {
    let now = Instant::now();
    let lines: Vec<ChildLine<'_>> = children.iter().map(|c| child_line(c, cli)).collect();
    let completed = lines.iter().filter(|c| c.status == "completed").count();
    let line = SummaryLine {
        kind: "summary",
        root_id,
        exit_code,
        interrupted,
        total: children.len(),
        completed,
        duration_ms: millis(now.saturating_duration_since(started)),
        usage: super::children::total_usage(children),
        children: lines,
    };
    write_line(out, &line)
}

/// One child's summary; `cli`: its runs are cli programs, whose exit code
/// is known (0 when it completed, else the one its error names).
fn child_line(c: &Child, cli: bool) -> ChildLine<'_> {
    let status = match c.phase {
        Phase::Done(s) => s.to_string(),
        Phase::Queued => "queued".into(),
        Phase::InPool => "queued_in_pool".into(),
        Phase::Running => "running".into(),
        Phase::Awaiting => "awaiting_approval".into(),
        Phase::NotCreated => "not_created".into(),
    };
    ChildLine {
        child_id: &c.id,
        name: &c.name,
        status,
        assignment: c.assignment.as_deref(),
        started_at: c.started,
        ended_at: c.ended,
        duration_ms: millis(c.elapsed(chrono::Utc::now())),
        tokens: c.tokens,
        result: c.result.as_deref(),
        error: c.error.as_deref(),
        exit_code: match c.phase {
            _ if !cli => None,
            Phase::Done(bamboo_domain::CompletionStatus::Completed) => Some(0),
            Phase::Done(_) => c.error.as_deref().and_then(super::joblog::exit_code_in),
            _ => None,
        },
        usage: c.usage,
        worktree: c.worktree.as_ref(),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Serializes `value` straight into the output: a line holding a long
/// answer is not built in memory first.
fn write_line(out: &mut Out, value: &impl Serialize) -> Result<(), Closed> {
    let mut w = out.chunked();
    match serde_json::to_writer(&mut w, value) {
        Ok(()) => w.finish()?,
        Err(e) if e.is_io() => return Err(Closed),
        // Our own structs always serialise; a failure would be a bug, not
        // input. What was written of the line is ended, and said.
        Err(e) => {
            w.finish()?;
            out.write("\n")?;
            out.write(&format!(
                r#"{{"kind":"error","message":"cannot serialise a line: {e}"}}"#
            ))?;
        }
    }
    out.write("\n")
}
