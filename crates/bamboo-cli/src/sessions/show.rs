//! `sessions show ID`: one session's record, then the logged events that
//! concern it. The record is read first (through the engine when it holds
//! the directory); the logs are then read straight from their files and
//! each event is written as it is read, so a log of millions of events is
//! shown in constant memory and at a constant cost per event, in text and
//! in `--json` alike.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use bamboo_domain::{AgentEvent, Session, TokenUsage};
use bamboo_engine::{LogTail, LoggedEvent};
use serde::Serialize;

use super::{Opened, TIME};
use crate::follow::ReadTo;
use crate::transcript::Transcript;

/// Text is handed to the writer in pieces of about this size.
const PIECE: usize = 64 * 1024;

/// What `show` prints besides the logs, read while the directory is open.
pub(super) struct Record {
    session: Session,
    /// A root's children's usage, summed (when any child reported some).
    children_usage: Option<TokenUsage>,
}

impl Record {
    /// Session `id` as stored, `None` when there is none.
    pub(super) async fn load(opened: &Opened, id: &str) -> anyhow::Result<Option<Self>> {
        let Some(session) = opened.load(id).await? else {
            return Ok(None);
        };
        let children_usage = if session.parent_id.is_none() {
            children_usage(opened, id).await?
        } else {
            None
        };
        Ok(Some(Self {
            session,
            children_usage,
        }))
    }
}

/// The usage the children of root `id` reported, summed; one child is held
/// at a time.
async fn children_usage(opened: &Opened, id: &str) -> anyhow::Result<Option<TokenUsage>> {
    let mut total: Option<TokenUsage> = None;
    for kid in opened.children_of(id) {
        let Some(child) = opened.load(&kid.id).await? else {
            continue;
        };
        if child.metadata.contains_key(bamboo_engine::usage::USAGE_KEY) {
            total
                .get_or_insert_with(TokenUsage::default)
                .add(&bamboo_engine::usage::totals(&child));
        }
    }
    Ok(total)
}

/// Writes `record` and the events of its logs under data directory `dir`
/// to `out`: text (children named by `titles`), or one JSON document.
/// Returns how far each log was read (`--follow` continues there).
///
/// # Errors
/// A log cannot be read, or `out` cannot be written.
pub(super) fn write(
    record: &Record,
    dir: &Path,
    json: bool,
    titles: HashMap<String, String>,
    out: &mut dyn Write,
) -> anyhow::Result<ReadTo> {
    let mut sink = Sink {
        out,
        text: String::new(),
    };
    let read_to = if json {
        write_json(record, dir, &mut sink)?
    } else {
        write_text(record, dir, titles, &mut sink)?
    };
    sink.flush()?;
    Ok(read_to)
}

/// Text gathered into pieces before it is written.
struct Sink<'a> {
    out: &'a mut dyn Write,
    text: String,
}

impl Sink<'_> {
    /// Writes the gathered text once there is a piece of it.
    fn spill(&mut self) -> std::io::Result<()> {
        if self.text.len() >= PIECE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.write_all(self.text.as_bytes())?;
        self.text.clear();
        Ok(())
    }
}

/// The two logs that hold a session's events, read one event at a time:
/// `step` is told where each log starts and ends, and gets every event that
/// concerns the session in between.
fn read_logs(
    dir: &Path,
    session: &Session,
    sink: &mut Sink<'_>,
    mut step: impl FnMut(&mut Sink<'_>, Step<'_>) -> std::io::Result<()>,
) -> anyhow::Result<ReadTo> {
    use anyhow::Context as _;
    let mut read_to = ReadTo::default();
    let logs = [
        session.parent_id.as_deref().map(|p| (p, Log::Parent)),
        Some((session.id.as_str(), Log::Own)),
    ];
    for (log_of, which) in logs.into_iter().flatten() {
        step(sink, Step::Start(which))?;
        let mut shown = 0u64;
        let mut last = 0u64;
        LogTail::new(dir, log_of)
            .read_each(|e| {
                last = e.seq;
                if which == Log::Own || concerns(&e.event, &session.id) {
                    step(sink, Step::Event(&e, shown))?;
                    shown += 1;
                }
                sink.spill()
            })
            .with_context(|| format!("cannot show the event log of session {log_of}"))?;
        match which {
            Log::Parent => read_to.parent = last,
            Log::Own => read_to.own = last,
        }
        step(sink, Step::End(shown))?;
    }
    Ok(read_to)
}

/// Which of a session's two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// The parent's: the events about this child.
    Parent,
    /// The session's own: the events of its children and below.
    Own,
}

/// Where `read_logs` is.
enum Step<'e> {
    /// A log starts.
    Start(Log),
    /// An event, after this many of the log's.
    Event(&'e LoggedEvent, u64),
    /// The log ended, after this many events.
    End(u64),
}

/// Whether a parent-log event is about child `id`.
pub fn concerns(event: &AgentEvent, id: &str) -> bool {
    if let Some(child) = event.child_session_id() {
        return child == id;
    }
    match event {
        // Lost events may have been this child's: keep the note.
        AgentEvent::EventsTruncated { .. } => true,
        _ => false,
    }
}

fn write_text(
    record: &Record,
    dir: &Path,
    titles: HashMap<String, String>,
    sink: &mut Sink<'_>,
) -> anyhow::Result<ReadTo> {
    let s = &record.session;
    head(&mut sink.text, record);
    let mut transcript = Transcript::new(titles);
    read_logs(dir, s, sink, |sink, step| {
        let text = &mut sink.text;
        match step {
            Step::Start(Log::Parent) => {
                text.push_str("\nevents of this child, from its parent's log:\n");
            }
            Step::Start(Log::Own) => {
                text.push_str("\nevents of its children and below, from its own log:\n");
            }
            Step::Event(e, _) => transcript.push(text, e),
            Step::End(n) => {
                transcript.finish(text);
                let _ = writeln!(text, "({n} {})", if n == 1 { "event" } else { "events" });
            }
        }
        Ok(())
    })
}

/// The session's record, as text: who it is, its status, its messages.
fn head(out: &mut String, record: &Record) {
    let s = &record.session;
    let _ = writeln!(out, "session  {}", s.id);
    let _ = writeln!(out, "title    {}", s.title);
    match (&s.parent_id, &s.child) {
        (Some(p), Some(c)) => {
            let _ = writeln!(out, "parent   {p}");
            let _ = writeln!(out, "status   {}", c.status);
            if let Some(e) = &c.last_error {
                let _ = writeln!(out, "error    {}", indent_rest(e, "         "));
            }
            if s.metadata.contains_key(bamboo_engine::usage::USAGE_KEY) {
                let _ = writeln!(
                    out,
                    "usage    {}",
                    usage_line(&bamboo_engine::usage::totals(s))
                );
            }
            if let Some(w) = bamboo_engine::worktree::of(s) {
                worktree_line(out, &w);
            }
        }
        _ => {
            let _ = writeln!(out, "kind     root");
            if let Some(total) = &record.children_usage {
                let _ = writeln!(out, "usage    {} (its children)", usage_line(total));
            }
        }
    }
    let _ = writeln!(out, "created  {}", s.created_at.format(TIME));
    let _ = writeln!(out, "\nmessages ({}):", s.messages.len());
    for m in &s.messages {
        let role = serde_json::to_value(m.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(out, "  {role}: {}", indent_rest(&m.content, "    "));
    }
}

fn worktree_line(out: &mut String, w: &bamboo_engine::worktree::Worktree) {
    let files = if w.files.is_empty() {
        "no files".to_owned()
    } else {
        w.files.join(", ")
    };
    let _ = match (&w.commit, w.removed) {
        (Some(c), false) => writeln!(
            out,
            "worktree {} on branch {} at {c} ({files})",
            w.path, w.branch
        ),
        (Some(c), true) => writeln!(
            out,
            "worktree removed; branch {} at {c} ({files})",
            w.branch
        ),
        (None, false) => writeln!(
            out,
            "worktree {} on branch {} (nothing committed yet)",
            w.path, w.branch
        ),
        (None, true) => writeln!(out, "worktree none kept: the child changed nothing"),
    };
}

/// `1234 tokens, $0.0123, 3 turns, 2 tool calls`.
fn usage_line(u: &TokenUsage) -> String {
    let cost = u.cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default();
    format!(
        "{} tokens{cost}, {} turns, {} tool calls",
        u.total_tokens, u.turns, u.tool_calls
    )
}

/// `text` with every line after the first indented by `pad`.
fn indent_rest(text: &str, pad: &str) -> String {
    text.replace('\n', &format!("\n{pad}"))
}

/// The `--json` document, written as `serde_json`'s pretty printer would
/// write `{"session", "own_events", "descendant_events"}` whole, but one
/// event at a time. JSON strings hold no raw newline, so indenting a
/// pretty-printed value's lines nests it exactly.
fn write_json(record: &Record, dir: &Path, sink: &mut Sink<'_>) -> anyhow::Result<ReadTo> {
    sink.text.push_str("{\n  \"session\": ");
    nested(&mut sink.text, &record.session, "  ")?;
    let root = record.session.parent_id.is_none();
    let read_to = read_logs(dir, &record.session, sink, |sink, step| {
        let text = &mut sink.text;
        match step {
            Step::Start(Log::Parent) => text.push_str(",\n  \"own_events\": ["),
            Step::Start(Log::Own) => {
                if root {
                    // A root has no parent log: none of the events are its own.
                    text.push_str(",\n  \"own_events\": []");
                }
                text.push_str(",\n  \"descendant_events\": [");
            }
            Step::Event(e, before) => {
                text.push_str(if before == 0 { "\n    " } else { ",\n    " });
                nested(text, e, "    ").map_err(std::io::Error::other)?;
            }
            Step::End(0) => text.push(']'),
            Step::End(_) => text.push_str("\n  ]"),
        }
        Ok(())
    })?;
    sink.text.push_str("\n}\n");
    Ok(read_to)
}

/// `value` pretty-printed into `out`, its lines after the first indented
/// by `pad`.
fn nested(out: &mut String, value: &impl Serialize, pad: &str) -> serde_json::Result<()> {
    let pretty = serde_json::to_string_pretty(value)?;
    for (i, line) in pretty.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(pad);
        }
        out.push_str(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::ChildInfo;

    /// A data directory whose logs hold `parent`'s and `own`'s lines.
    fn logs(lines: &[(&str, Vec<String>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("events")).unwrap();
        for (session, lines) in lines {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(
                dir.path().join("events").join(format!("{session}.ndjson")),
                text,
            )
            .unwrap();
        }
        dir
    }

    /// One log line: event `event` at `seq`.
    fn line(seq: u64, event: &AgentEvent) -> String {
        let json = serde_json::to_string(event).unwrap();
        format!(
            r#"{{"seq":{seq},"t":{},"event":{json}}}"#,
            1_700_000_000_000_000 + seq
        )
    }

    fn of(parent: &Session, child: &Session, event: AgentEvent) -> AgentEvent {
        AgentEvent::SubAgentEvent {
            parent_session_id: parent.id.as_str().into(),
            child_session_id: child.id.as_str().into(),
            event: Box::new(event),
        }
    }

    fn shown(record: &Record, dir: &Path, json: bool) -> String {
        let mut out = Vec::new();
        write(record, dir, json, HashMap::new(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// What `--json` printed when it built the whole document first.
    #[derive(Serialize)]
    struct Whole<'a> {
        session: &'a Session,
        own_events: &'a [LoggedEvent],
        descendant_events: &'a [LoggedEvent],
    }

    /// `text` with the read time of a loss (when it was read, not logged) blanked.
    fn steady(text: &str) -> String {
        text.lines()
            .map(|l| match l.trim_start().strip_prefix("\"time\": \"") {
                Some(t) if !t.starts_with("2023-11-14") => "\"time\": (read time)",
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn whole(dir: &Path, session: &Session, own: &[LoggedEvent]) -> String {
        let descendants = LogTail::new(dir, &session.id).read_new().unwrap();
        let doc = Whole {
            session,
            own_events: own,
            descendant_events: &descendants,
        };
        serde_json::to_string_pretty(&doc).unwrap() + "\n"
    }

    #[test]
    fn json_streamed_event_by_event_is_the_whole_document_serde_would_print() {
        let root = Session::new_root("run");
        let mut child = Session::new_child(&root, ChildInfo::new("r", "say hi"));
        child.title = "first".into();
        let other = Session::new_child(&root, ChildInfo::new("r", "other"));
        let parent_log = vec![
            line(1, &of(&root, &child, AgentEvent::token("hi "))),
            line(2, &of(&root, &other, AgentEvent::token("not mine"))),
            line(3, &of(&root, &child, AgentEvent::token("line\nbreak"))),
            // Events 4..=6 lost: shown as one `events_truncated`.
            r#"{"gap_to":6}"#.to_owned(),
            line(7, &of(&root, &child, AgentEvent::token("end"))),
        ];
        let dir = logs(&[(root.id.as_str(), parent_log)]);
        let own: Vec<LoggedEvent> = LogTail::new(dir.path(), &root.id)
            .read_new()
            .unwrap()
            .into_iter()
            .filter(|e| concerns(&e.event, &child.id))
            .collect();
        assert_eq!(own.len(), 4, "three tokens and the loss: {own:?}");
        let record = Record {
            session: child.clone(),
            children_usage: None,
        };
        assert_eq!(
            steady(&shown(&record, dir.path(), true)),
            steady(&whole(dir.path(), &child, &own)),
            "a child with events from its parent's log and none of its own"
        );
        let record = Record {
            session: root.clone(),
            children_usage: None,
        };
        assert_eq!(
            steady(&shown(&record, dir.path(), true)),
            steady(&whole(dir.path(), &root, &[])),
            "a root: its own log only"
        );
        let empty = logs(&[]);
        assert_eq!(
            shown(&record, empty.path(), true),
            whole(empty.path(), &root, &[]),
            "no log at all"
        );
    }

    #[test]
    fn text_assembles_tokens_and_counts_each_logs_events_after_them() {
        let root = Session::new_root("run");
        let child = Session::new_child(&root, ChildInfo::new("r", "say hi"));
        let parent_log = (1..=3000)
            .map(|i| line(i, &of(&root, &child, AgentEvent::token(format!("w{i} ")))))
            .collect();
        let dir = logs(&[(root.id.as_str(), parent_log)]);
        let record = Record {
            session: child,
            children_usage: None,
        };
        let text = shown(&record, dir.path(), false);
        let events: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("events of this child"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(events.len(), 2, "{events:#?}");
        assert!(events[0].contains("w1 w2 w3 "), "{}", events[0]);
        assert!(
            events[0].trim_end().ends_with("w2999 w3000"),
            "{}",
            &events[0][events[0].len() - 40..]
        );
        assert_eq!(events[1], "(3000 events)");
        assert!(
            text.ends_with("events of its children and below, from its own log:\n(0 events)\n"),
            "{}",
            &text[text.len() - 100..]
        );
    }

    #[test]
    fn a_reader_that_went_away_stops_the_reading() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let root = Session::new_root("run");
        let child = Session::new_child(&root, ChildInfo::new("r", "say hi"));
        let long = "x".repeat(1000);
        let parent_log = (1..=1000)
            .map(|i| line(i, &of(&root, &child, AgentEvent::token(&long))))
            .collect();
        let dir = logs(&[(root.id.as_str(), parent_log)]);
        let record = Record {
            session: child,
            children_usage: None,
        };
        let err = write(&record, dir.path(), false, HashMap::new(), &mut Closed).unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().expect("an io error");
        assert!(crate::pager::quits_early(io), "{err:#}");
    }

    #[test]
    fn a_parent_log_event_concerns_only_its_child() {
        let ev = |child: &str| AgentEvent::SubAgentEvent {
            parent_session_id: "p".into(),
            child_session_id: child.into(),
            event: Box::new(AgentEvent::token("hi ")),
        };
        assert!(concerns(&ev("c1"), "c1"));
        assert!(!concerns(&ev("c2"), "c1"));
        let lost = AgentEvent::EventsTruncated {
            session_id: "p".into(),
            first_seq: 3,
            last_seq: 9,
            reason: "cap".into(),
        };
        assert!(concerns(&lost, "c1"), "a loss is shown to every child");
    }
}
