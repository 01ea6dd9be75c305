//! Human output: model tokens assembled into lines under the child's tag, one
//! line per tool call, each result once, and a failed child's error (with the
//! stderr tail a cli child left). `-q` keeps only the results.

use std::collections::HashMap;

use bamboo_domain::{AgentEvent, CompletionStatus, TaskItemStatus};

use super::children::{Child, Phase, Who};
use super::out::{Closed, Out};
use super::style::{first_line, Style};

/// Streamed text kept per child to tell whether its result was already shown.
const TAIL_KEEP: usize = 1536 * 1024;

/// A top-level child's streamed text, kept once both to print its lines and
/// to tell whether its result was already shown.
#[derive(Debug, Default)]
struct Tail {
    text: String,
    /// Where the unfinished line starts in `text`.
    line: usize,
}

/// Renders events for people.
#[derive(Debug)]
pub struct Human {
    style: Style,
    quiet: bool,
    /// More than one child: quiet results are tagged with the child's name.
    tag_results: bool,
    /// The unfinished line of each nested session (by session id).
    partial: HashMap<String, String>,
    /// Each top-level child's streamed text: its newest part, which ends
    /// in its unfinished line (kept whole, however long).
    tails: HashMap<usize, Tail>,
    /// Lines start with `[name]` (`--no-tag` turns it off).
    tag: bool,
    /// Lines start with this time (`--timestamps`): the current event's,
    /// formatted only when a line is printed (most tokens print none).
    stamp: Option<chrono::DateTime<chrono::Utc>>,
    timestamps: bool,
}

impl Human {
    /// A renderer; `quiet` prints results only.
    pub fn new(style: Style, quiet: bool, children: usize) -> Self {
        Self {
            style,
            quiet,
            tag_results: children > 1,
            partial: HashMap::new(),
            tails: HashMap::new(),
            tag: true,
            stamp: None,
            timestamps: false,
        }
    }

    /// `--no-tag` (`tag` false) and `--timestamps`.
    pub fn layout(&mut self, tag: bool, timestamps: bool) {
        self.tag = tag;
        self.timestamps = timestamps;
    }

    /// The time of the event being rendered, for `--timestamps`.
    pub fn at(&mut self, time: chrono::DateTime<chrono::Utc>) {
        if self.timestamps {
            self.stamp = Some(time);
        }
    }

    /// Renders one logged event about `who`.
    pub fn event(&mut self, out: &mut Out, who: &Who, event: &AgentEvent) -> Result<(), Closed> {
        match event {
            AgentEvent::SubAgentEvent { event, .. } => self.inner(out, who, event),
            AgentEvent::SubAgentStarted { title, .. } if !who.is_top && !self.quiet => {
                let title = title.as_deref().unwrap_or("");
                let text = self
                    .style
                    .dim(&format!("started {}", first_line(title, 80)));
                self.line(out, who, &text)
            }
            AgentEvent::SubAgentCompleted { status, error, .. } => {
                self.flush_partial(out, who)?;
                if who.is_top || self.quiet {
                    return Ok(());
                }
                let text = match status {
                    CompletionStatus::Completed => self.style.dim("completed"),
                    other => self.style.bad(&format!(
                        "{other}: {}",
                        first_line(error.as_deref().unwrap_or(""), 200)
                    )),
                };
                self.line(out, who, &text)
            }
            _ => Ok(()),
        }
    }

    fn inner(&mut self, out: &mut Out, who: &Who, event: &AgentEvent) -> Result<(), Closed> {
        if let AgentEvent::Token { content } = event {
            return self.token(out, who, content);
        }
        if self.quiet {
            return Ok(());
        }
        if let AgentEvent::Stderr { line } = event {
            // A line of its own, dimmed and marked; the child's unfinished
            // text line is not on screen yet, so it waits on.
            let text = self.style.dim(&format!("! {}", self.style.clean(line)));
            return self.line(out, who, &text);
        }
        let text = match event {
            AgentEvent::ToolStart {
                tool_name,
                arguments,
                ..
            } => self.style.dim(&format!(
                "⚙ {tool_name} {}",
                first_line(&arguments.to_string(), 120)
            )),
            AgentEvent::ToolComplete {
                tool_name, result, ..
            } => self
                .style
                .dim(&format!("✓ {tool_name}: {}", first_line(result, 100))),
            AgentEvent::ToolError {
                tool_name, error, ..
            } => self
                .style
                .bad(&format!("✗ {tool_name}: {}", first_line(error, 200))),
            AgentEvent::Error { message } => self
                .style
                .bad(&format!("error: {}", first_line(message, 200))),
            // The status area says where a child runs; the text stays the child's.
            AgentEvent::Complete { .. } | AgentEvent::Placed { .. } => return Ok(()),
            AgentEvent::Retrying {
                what,
                attempt,
                delay_ms,
                reason,
            } => self.style.dim(&format!(
                "↻ {what}: {reason}; try {attempt} in {:.1}s",
                *delay_ms as f64 / 1000.0
            )),
            AgentEvent::ContextCompressed {
                before_tokens,
                after_tokens,
                messages_compressed,
                method,
                ..
            } => self.style.dim(&format!(
                "⇣ context compressed ({method}): {messages_compressed} messages, ~{before_tokens} → ~{after_tokens} tokens"
            )),
            AgentEvent::TaskListUpdated { task_list } => {
                let done = task_list
                    .items
                    .iter()
                    .filter(|t| t.status == TaskItemStatus::Completed)
                    .count();
                self.style.dim(&format!(
                    "☰ task list: {done} of {} done",
                    task_list.items.len()
                ))
            }
            other => {
                let json = serde_json::to_string(other).unwrap_or_default();
                self.style.dim(&format!("· {}", first_line(&json, 120)))
            }
        };
        self.flush_partial(out, who)?;
        self.line(out, who, &text)
    }

    /// Model text: whole lines are printed, the rest waits for its newline.
    /// A token costs the same however long the waiting line is: only the
    /// token is searched for a newline, and the line grows in place.
    fn token(&mut self, out: &mut Out, who: &Who, content: &str) -> Result<(), Closed> {
        if self.quiet {
            return Ok(());
        }
        if who.is_top {
            return self.top_token(out, who, content);
        }
        if !content.contains('\n') {
            match self.partial.get_mut(&who.session_id) {
                Some(buf) => buf.push_str(content),
                None => {
                    self.partial
                        .insert(who.session_id.clone(), content.to_owned());
                }
            }
            return Ok(());
        }
        let mut buf = self.partial.remove(&who.session_id).unwrap_or_default();
        buf.push_str(content);
        let mut start = 0;
        while let Some(pos) = buf[start..].find('\n') {
            let line = &buf[start..start + pos];
            let line = line.strip_suffix('\r').unwrap_or(line);
            let text = self.style.clean(line).into_owned();
            self.line(out, who, &text)?;
            start += pos + 1;
        }
        if start < buf.len() {
            buf.drain(..start);
            self.partial.insert(who.session_id.clone(), buf);
        }
        Ok(())
    }

    /// [`Human::token`] for a top-level child: its lines are printed from its
    /// tail, where the text is kept anyway.
    fn top_token(&mut self, out: &mut Out, who: &Who, content: &str) -> Result<(), Closed> {
        let mut tail = self.tails.remove(&who.top).unwrap_or_default();
        tail.text.push_str(content);
        let mut printed = Ok(());
        if let Some(last) = content.rfind('\n') {
            let end = tail.text.len() - content.len() + last;
            for line in tail.text[tail.line..end].split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                printed = self.line(out, who, &self.style.clean(line));
                if printed.is_err() {
                    break;
                }
            }
            tail.line = end + 1;
        }
        if tail.text.len() > 2 * TAIL_KEEP {
            // The unfinished line stays whole: it is yet to be printed.
            let mut cut = (tail.text.len() - TAIL_KEEP).min(tail.line);
            while !tail.text.is_char_boundary(cut) {
                cut += 1;
            }
            tail.text.drain(..cut);
            tail.line -= cut;
        }
        self.tails.insert(who.top, tail);
        printed
    }

    fn flush_partial(&mut self, out: &mut Out, who: &Who) -> Result<(), Closed> {
        if who.is_top {
            let Some(tail) = self.tails.get_mut(&who.top) else {
                return Ok(());
            };
            let start = std::mem::replace(&mut tail.line, tail.text.len());
            return self.print_rest(out, who, &self.tails[&who.top].text[start..]);
        }
        match self.partial.remove(&who.session_id) {
            Some(rest) => self.print_rest(out, who, &rest),
            None => Ok(()),
        }
    }

    /// Prints the unterminated rest of a text as a line: trailing blanks say
    /// nothing.
    fn print_rest(&self, out: &mut Out, who: &Who, rest: &str) -> Result<(), Closed> {
        let rest = rest.trim_end();
        if self.quiet || rest.is_empty() {
            return Ok(());
        }
        self.line(out, who, &self.style.clean(rest))
    }

    /// Reports a top-level child's end: its result once (not again when its
    /// streamed text already showed it), or its status and error.
    pub fn finished(&mut self, out: &mut Out, who: &Who, child: &Child) -> Result<(), Closed> {
        let tail = self.tails.remove(&who.top).unwrap_or_default().text;
        let Phase::Done(status) = child.phase else {
            return Ok(());
        };
        if status != CompletionStatus::Completed {
            return self.failed(out, who, status, child.error.as_deref());
        }
        let result = child.result.as_deref().unwrap_or("");
        if self.quiet {
            return self.quiet_result(out, who, result);
        }
        if already_streamed(&tail, result) {
            let text = self.style.dim("completed");
            return self.line(out, who, &text);
        }
        // Written in pieces: the result may be long, and is not copied.
        let mut lines = result.trim_end().lines();
        let first = self.style.clean(lines.next().unwrap_or(""));
        self.line_after(out, who, "completed: ", &first)?;
        for more in lines {
            self.line_after(out, who, "  ", &self.style.clean(more))?;
        }
        Ok(())
    }

    fn failed(
        &mut self,
        out: &mut Out,
        who: &Who,
        status: CompletionStatus,
        error: Option<&str>,
    ) -> Result<(), Closed> {
        let error = error.unwrap_or("no reason given");
        let mut lines = error
            .trim_end()
            .lines()
            .map(|l| self.style.clean(l).into_owned());
        let head = format!("{status}: {}", lines.next().unwrap_or_default());
        if self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = std::io::Write::write_fmt(&mut err, format_args!("[{}] {head}\n", who.label));
            for more in lines {
                let _ =
                    std::io::Write::write_fmt(&mut err, format_args!("[{}]   {more}\n", who.label));
            }
            return Ok(());
        }
        let head = self.style.bad(&head);
        self.line(out, who, &head)?;
        for more in lines {
            self.line(out, who, &format!("  {more}"))?;
        }
        Ok(())
    }

    fn quiet_result(&mut self, out: &mut Out, who: &Who, result: &str) -> Result<(), Closed> {
        let tagged = self.tag_results && self.tag;
        if !tagged && self.stamp.is_none() && !self.style.sanitize {
            // Not a terminal: the result exactly as the child gave it.
            out.write(result)?;
            return if result.ends_with('\n') {
                Ok(())
            } else {
                out.write("\n")
            };
        }
        for line in result.trim_end().lines() {
            let line = self.style.clean(line);
            if tagged || self.stamp.is_some() {
                self.line(out, who, &line)?;
            } else {
                out.write(&line)?;
                out.write("\n")?;
            }
        }
        Ok(())
    }

    fn line(&self, out: &mut Out, who: &Who, text: &str) -> Result<(), Closed> {
        self.line_after(out, who, "", text)
    }

    /// [`Human::line`] of `lead` followed by `text`.
    fn line_after(&self, out: &mut Out, who: &Who, lead: &str, text: &str) -> Result<(), Closed> {
        if let Some(stamp) = &self.stamp {
            out.write(&stamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))?;
            out.write(" ")?;
        }
        // Quiet results of a single child go untagged, as before.
        if self.tag && (!self.quiet || self.tag_results) {
            out.write(&self.style.tag(who.top, &who.label))?;
            out.write(" ")?;
        }
        out.write(lead)?;
        out.write(text)?;
        out.write("\n")
    }
}

/// True when the streamed text ends with `result` (a cli child's result is
/// its stdout, maybe with a line saying how much of its start was dropped).
fn already_streamed(tail: &str, result: &str) -> bool {
    let body = match result.split_once('\n') {
        Some((first, rest)) if first.starts_with("[... ") && first.ends_with("truncated ...]") => {
            rest
        }
        _ => result,
    };
    let body = body.trim_end();
    !body.is_empty() && tail.trim_end().ends_with(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A Write that keeps what the renderer printed.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn who(label: &str, is_top: bool) -> Who {
        Who {
            top: 0,
            label: label.into(),
            session_id: label.into(),
            is_top,
        }
    }

    fn wrapped(event: AgentEvent) -> AgentEvent {
        AgentEvent::SubAgentEvent {
            parent_session_id: "root".into(),
            child_session_id: "c".into(),
            event: Box::new(event),
        }
    }

    fn render(events: &[(Who, AgentEvent)], child: Option<Child>) -> String {
        let buf = Buf::default();
        let mut out = Out::new(Box::new(buf.clone()));
        let style = Style {
            colour: false,
            sanitize: true,
        };
        let mut human = Human::new(style, false, 2);
        for (w, e) in events {
            human.event(&mut out, w, e).unwrap();
        }
        if let Some(c) = child {
            human.finished(&mut out, &events[0].0, &c).unwrap();
        }
        out.flush().unwrap();
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn done(status: CompletionStatus, result: Option<&str>, error: Option<&str>) -> Child {
        Child {
            id: "c".into(),
            name: "c".into(),
            phase: Phase::Done(status),
            started: None,
            ended: None,
            tokens: 0,
            error: error.map(str::to_owned),
            result: result.map(str::to_owned),
            assignment: None,
            worker: None,
            usage: None,
            worktree: None,
        }
    }

    #[test]
    fn tokens_become_text_lines_and_tool_calls_one_line_each() {
        let c = who("c", true);
        let text = render(
            &[
                (c.clone(), wrapped(AgentEvent::token("Hel"))),
                (c.clone(), wrapped(AgentEvent::token("lo \"you\"\nsecond"))),
                (
                    c.clone(),
                    wrapped(AgentEvent::ToolStart {
                        tool_call_id: "1".into(),
                        tool_name: "read_file".into(),
                        arguments: serde_json::json!({"path": "a.txt"}),
                    }),
                ),
                (c.clone(), wrapped(AgentEvent::token("\u{1b}[2J done\n"))),
            ],
            Some(done(CompletionStatus::Completed, Some("the answer"), None)),
        );
        assert_eq!(
            text,
            "[c] Hello \"you\"\n[c] second\n[c] ⚙ read_file {\"path\":\"a.txt\"}\n[c] \u{fffd}[2J done\n[c] completed: the answer\n"
        );
    }

    #[test]
    fn a_streamed_result_is_not_repeated_and_a_failure_shows_its_stderr_tail() {
        let c = who("c", true);
        let text = render(
            &[(c.clone(), wrapped(AgentEvent::token("all of it\n")))],
            Some(done(CompletionStatus::Completed, Some("all of it\n"), None)),
        );
        assert_eq!(text, "[c] all of it\n[c] completed\n");
        let text = render(
            &[(c.clone(), wrapped(AgentEvent::token("x\n")))],
            Some(done(
                CompletionStatus::Error,
                None,
                Some("program failed\nstderr line"),
            )),
        );
        assert_eq!(
            text,
            "[c] x\n[c] error: program failed\n[c]   stderr line\n"
        );
    }

    #[test]
    fn a_token_extends_the_waiting_line_in_place() {
        // A line rebuilt per token would move to a new allocation each time;
        // grown in place it moves only when its capacity doubles.
        let c = who("c", true);
        let mut out = Out::new(Box::new(Buf::default()));
        let style = Style {
            colour: false,
            sanitize: true,
        };
        let mut human = Human::new(style, false, 1);
        let token = wrapped(AgentEvent::token("w "));
        let (mut moves, mut at) = (0, std::ptr::null());
        for _ in 0..20_000 {
            human.event(&mut out, &c, &token).unwrap();
            let now = human.tails[&0].text.as_ptr();
            if now != at {
                moves += 1;
                at = now;
            }
        }
        assert_eq!(human.tails[&0].text.len(), 40_000);
        assert!(moves <= 24, "the line moved {moves} times");
    }

    #[test]
    fn a_top_childs_text_is_kept_once_for_its_lines_and_its_result() {
        // Its unfinished line is the end of the text kept to recognise its
        // result: one copy, however long the line.
        let c = who("c", true);
        let long = "w ".repeat(2 * TAIL_KEEP);
        let mut events: Vec<(Who, AgentEvent)> =
            vec![(c.clone(), wrapped(AgentEvent::token("a\nb")))];
        events.push((c.clone(), wrapped(AgentEvent::token(long.as_str()))));
        events.push((c.clone(), wrapped(AgentEvent::token("x\ny"))));
        let completed = AgentEvent::SubAgentCompleted {
            parent_session_id: "root".into(),
            child_session_id: "c".into(),
            status: CompletionStatus::Completed,
            result: None,
            error: None,
            usage: None,
            worktree: None,
        };
        events.push((c.clone(), completed));
        let text = render(
            &events,
            Some(done(CompletionStatus::Completed, Some("y"), None)),
        );
        assert_eq!(text, format!("[c] a\n[c] b{long}x\n[c] y\n[c] completed\n"));
    }

    #[test]
    fn a_result_already_streamed_is_recognised_even_truncated() {
        assert!(already_streamed("a\nb\n", "a\nb\n"));
        assert!(already_streamed(
            "x\na\nb\n",
            "[... 2 earlier bytes of output truncated ...]\na\nb\n"
        ));
        assert!(!already_streamed("hello world ", "echo: hello world"));
        assert!(!already_streamed("", ""));
    }
}
