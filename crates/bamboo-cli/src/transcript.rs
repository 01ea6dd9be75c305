//! The human view of logged events in `sessions show`: a child's tokens
//! assembled into its text (not one line per token), each tool call on one
//! line as the front door shows it (`⚙ tool args`, `✓ tool: result`,
//! `✗ tool: error`), every other event on one line.
//!
//! Streaming: events are pushed as they are read, so `show --follow` prints
//! a child's text as it grows, and the whole log renders the same way.

use std::collections::HashMap;
use std::fmt::Write as _;

use bamboo_domain::AgentEvent;
use bamboo_engine::LoggedEvent;

use super::style::first_line;

/// Width of the `  #seq   hh:mm:ss.mmm  ` head of a line.
const HEAD: usize = 2 + 1 + 5 + 1 + 12 + 2;

/// Renders events one at a time; [`Transcript::finish`] ends an open text.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Session id → title, to name children.
    titles: HashMap<String, String>,
    /// The child whose text line is open: its next token continues it.
    open: Option<String>,
    /// The padding of a text's further lines (head plus `[who] `).
    pad: String,
}

impl Transcript {
    /// A renderer naming children by `titles` (session id → title).
    pub fn new(titles: HashMap<String, String>) -> Self {
        Self {
            titles,
            ..Self::default()
        }
    }

    /// Renders `e` into `out`.
    pub fn push(&mut self, out: &mut String, e: &LoggedEvent) {
        if let AgentEvent::SubAgentEvent {
            child_session_id,
            event,
            ..
        } = &*e.event
        {
            if let AgentEvent::Token { content } = event.as_ref() {
                self.token(out, e, child_session_id, content);
                return;
            }
        }
        self.finish(out);
        let _ = writeln!(out, "{}{}", head(e), self.describe(&e.event));
    }

    /// Ends the open text line, if any.
    pub fn finish(&mut self, out: &mut String) {
        if self.open.take().is_some() {
            out.push('\n');
        }
    }

    fn token(&mut self, out: &mut String, e: &LoggedEvent, child: &str, content: &str) {
        if self.open.as_deref() != Some(child) {
            self.finish(out);
            let who = self.who(child);
            let _ = write!(out, "{}{who} ", head(e));
            self.pad = " ".repeat(HEAD + who.chars().count() + 1);
            self.open = Some(child.to_owned());
        }
        for (i, part) in content.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
                out.push_str(&self.pad);
            }
            out.push_str(&clean(part));
        }
    }

    fn who(&self, id: &str) -> String {
        match self.titles.get(id) {
            Some(t) if !t.is_empty() => format!("[{}]", first_line(t, 40)),
            _ => format!("[{id}]"),
        }
    }

    /// One event as a short line: who (the child's title) and what.
    pub fn describe(&self, event: &AgentEvent) -> String {
        let json = |e: &AgentEvent| first_line(&serde_json::to_string(e).unwrap_or_default(), 200);
        match event {
            AgentEvent::SubAgentStarted {
                child_session_id, ..
            } => format!("{} started", self.who(child_session_id)),
            AgentEvent::SubAgentEvent {
                child_session_id,
                event,
                ..
            } => format!("{} {}", self.who(child_session_id), inner(event, json)),
            AgentEvent::SubAgentHeartbeat {
                child_session_id, ..
            } => format!("{} heartbeat", self.who(child_session_id)),
            AgentEvent::SubAgentCompleted {
                child_session_id,
                status,
                error,
                ..
            } => match error {
                Some(e) => format!(
                    "{} {status}: {}",
                    self.who(child_session_id),
                    first_line(e, 200)
                ),
                None => format!("{} {status}", self.who(child_session_id)),
            },
            AgentEvent::ChildApprovalRequested {
                child_session_id,
                tool_name,
                resource,
                ..
            } => format!(
                "{} approval requested: {tool_name} on {resource:?}",
                self.who(child_session_id)
            ),
            AgentEvent::EventsTruncated {
                first_seq,
                last_seq,
                reason,
                ..
            } => format!("events #{first_seq}..#{last_seq} were lost: {reason}"),
            other => json(other),
        }
    }
}

/// A child's own event, as the front door shows it.
fn inner(event: &AgentEvent, json: impl Fn(&AgentEvent) -> String) -> String {
    let text = match event {
        AgentEvent::Token { content } => first_line(content, 200),
        AgentEvent::ToolStart {
            tool_name,
            arguments,
            ..
        } => format!("⚙ {tool_name} {}", first_line(&arguments.to_string(), 120)),
        AgentEvent::ToolComplete {
            tool_name, result, ..
        } => format!("✓ {tool_name}: {}", first_line(result, 100)),
        AgentEvent::ToolError {
            tool_name, error, ..
        } => format!("✗ {tool_name}: {}", first_line(error, 200)),
        AgentEvent::Stderr { line } => format!("! {line}"),
        AgentEvent::Placed { worker, host, .. } => match host {
            Some(host) => format!("placed on {worker}@{host}"),
            None => format!("placed on {worker}"),
        },
        AgentEvent::Retrying {
            what,
            attempt,
            reason,
            ..
        } => format!("↻ {what}: {reason}; try {attempt}"),
        AgentEvent::Error { message } => format!("error: {}", first_line(message, 200)),
        AgentEvent::Complete { .. } => "complete".to_owned(),
        other => json(other),
    };
    clean(&text).into_owned()
}

/// `  #seq   hh:mm:ss.mmm  `: where and when the event was logged.
fn head(e: &LoggedEvent) -> String {
    format!("  #{:<5} {}  ", e.seq, e.time.format("%H:%M:%S%.3f"))
}

/// `text` safe to show: a transcript must not drive the terminal or pager
/// it is read on.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    super::style::defuse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn logged(seq: u64, event: AgentEvent) -> LoggedEvent {
        LoggedEvent {
            seq,
            time: chrono::DateTime::default(),
            event: Arc::new(event),
        }
    }

    fn of(child: &str, event: AgentEvent) -> AgentEvent {
        AgentEvent::SubAgentEvent {
            parent_session_id: "p".into(),
            child_session_id: child.into(),
            event: Box::new(event),
        }
    }

    fn render(events: Vec<AgentEvent>) -> String {
        let mut t = Transcript::new(HashMap::from([
            ("c1".to_owned(), "one".to_owned()),
            ("c2".to_owned(), "two".to_owned()),
        ]));
        let mut out = String::new();
        for (i, e) in events.into_iter().enumerate() {
            t.push(&mut out, &logged(i as u64 + 1, e));
        }
        t.finish(&mut out);
        out
    }

    #[test]
    fn tokens_are_assembled_into_text_and_tools_take_one_line_each() {
        let mut events: Vec<AgentEvent> = (0..2000)
            .map(|i| of("c1", AgentEvent::token(format!("w{i} "))))
            .collect();
        events.push(of(
            "c1",
            AgentEvent::ToolStart {
                tool_call_id: "t1".into(),
                tool_name: "read_file".into(),
                arguments: serde_json::json!({"path": "a.txt"}),
            },
        ));
        events.push(of(
            "c1",
            AgentEvent::ToolComplete {
                tool_call_id: "t1".into(),
                tool_name: "read_file".into(),
                result: "first\nsecond".into(),
            },
        ));
        events.push(of(
            "c1",
            AgentEvent::ToolError {
                tool_call_id: "t2".into(),
                tool_name: "shell".into(),
                error: "denied".into(),
            },
        ));
        events.push(of("c1", AgentEvent::token("after\nnext line")));
        events.push(of("c2", AgentEvent::token("other \u{1b}[2J")));
        let text = render(events);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(
            lines[0].starts_with("  #1     00:00:00.000  [one] w0 w1 "),
            "{text}"
        );
        assert!(lines[0].ends_with("w1999 "), "{text}");
        assert_eq!(
            lines[1],
            r#"  #2001  00:00:00.000  [one] ⚙ read_file {"path":"a.txt"}"#
        );
        assert_eq!(lines[2], "  #2002  00:00:00.000  [one] ✓ read_file: first");
        assert_eq!(lines[3], "  #2003  00:00:00.000  [one] ✗ shell: denied");
        assert_eq!(lines[4], "  #2004  00:00:00.000  [one] after");
        assert_eq!(lines[5], format!("{}next line", " ".repeat(HEAD + 6)));
        assert_eq!(lines[6], "  #2005  00:00:00.000  [two] other \u{fffd}[2J");
    }

    #[test]
    fn other_events_take_one_line() {
        let text = render(vec![
            AgentEvent::EventsTruncated {
                session_id: "p".into(),
                first_seq: 3,
                last_seq: 9,
                reason: "cap".into(),
            },
            of(
                "zz",
                AgentEvent::Stderr {
                    line: "warn".into(),
                },
            ),
        ]);
        assert_eq!(
            text,
            "  #1     00:00:00.000  events #3..#9 were lost: cap\n  #2     00:00:00.000  [zz] ! warn\n"
        );
    }
}
