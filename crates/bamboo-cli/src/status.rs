//! The live status area on a terminal's stderr: counts per phase, elapsed
//! time, and one line per running child with its tokens. It is erased before
//! anything else is written to the same terminal and redrawn on the next tick;
//! while an approval prompt is shown it stays hidden.

use std::io::Write;
use std::time::Instant;

use super::children::{Children, Phase};
use super::style::Style;
use super::summary::human_duration;

/// Most child lines shown under the counts.
const MAX_CHILD_LINES: usize = 6;

/// The status area's drawing state.
#[derive(Debug)]
pub struct StatusArea {
    drawn: usize,
    paused: bool,
    started: Instant,
    style: Style,
}

impl StatusArea {
    /// An area started now.
    pub fn new(style: Style) -> Self {
        Self {
            drawn: 0,
            paused: false,
            started: Instant::now(),
            style,
        }
    }

    /// Erases the area (before stdout writes to the same terminal, or a prompt).
    pub fn hide(&mut self) {
        if self.drawn == 0 {
            return;
        }
        let mut err = std::io::stderr().lock();
        // Up to the first line drawn, then clear to the end of the screen.
        let _ = write!(err, "\r\x1b[{}A\x1b[J", self.drawn);
        let _ = err.flush();
        self.drawn = 0;
    }

    /// Hides the area until [`StatusArea::resume`] (an approval prompt is shown).
    pub fn pause(&mut self) {
        self.hide();
        self.paused = true;
    }

    /// Lets the area be drawn again.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Redraws the area from the children's state, each line cut to the
    /// terminal's width (read anew each time, so a resize takes effect at the
    /// next draw): a line that wrapped would leave a copy behind at every
    /// redraw.
    pub fn draw(&mut self, children: &Children) {
        if self.paused {
            return;
        }
        let lines = self.lines(children, Instant::now());
        let width = terminal_size::terminal_size_of(std::io::stderr())
            .map_or(80, |(w, _)| usize::from(w.0));
        self.hide();
        let mut err = std::io::stderr().lock();
        for line in &lines {
            // One column spare: writing the last one leaves some terminals
            // waiting to wrap.
            let line = super::style::fit(line, width.saturating_sub(1).max(1));
            let _ = writeln!(err, "\x1b[2K{line}");
        }
        let _ = err.flush();
        self.drawn = lines.len();
    }

    fn lines(&self, children: &Children, now: Instant) -> Vec<String> {
        let [queued, running, awaiting, done, failed] = children.counts();
        let in_pool = children.in_pool();
        let mut counts = vec![format!("{} queued", queued - in_pool)];
        if in_pool > 0 {
            counts.push(format!("{in_pool} queued in the pool"));
        }
        counts.push(format!("{running} running"));
        if awaiting > 0 {
            counts.push(format!("{awaiting} awaiting approval"));
        }
        counts.push(format!("{done} done"));
        if failed > 0 {
            counts.push(format!("{failed} failed"));
        }
        let elapsed = now.saturating_duration_since(self.started);
        let progress = super::progress::text(done + failed, children.total(), elapsed);
        let used = children
            .total_usage()
            .map(|u| format!(" · {}", super::children::usage_text(&u)))
            .unwrap_or_default();
        let mut lines = vec![self.style.dim(&format!(
            "── {} · {} · {progress}{used}",
            counts.join(" · "),
            human_duration(elapsed)
        ))];
        let active = children
            .all()
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.phase, Phase::Running | Phase::Awaiting));
        for (i, c) in active.take(MAX_CHILD_LINES) {
            let what = if c.phase == Phase::Awaiting {
                "awaiting approval"
            } else {
                "running"
            };
            let on = c
                .worker
                .as_deref()
                .map(|w| format!(" · on {w}"))
                .unwrap_or_default();
            lines.push(format!(
                "   {} {what} {} · {} tokens{on}",
                self.style.tag(i, &c.name),
                human_duration(c.elapsed(chrono::Utc::now())),
                c.tokens
            ));
        }
        let shown = lines.len() - 1;
        if running + awaiting > shown {
            lines.push(format!("   … and {} more", running + awaiting - shown));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_area_counts_phases_and_lists_running_children() {
        let mut c = Children::default();
        for i in 0..8 {
            c.add(format!("id{i}"), format!("c{i}"), None);
        }
        let now = Instant::now();
        for i in 0..7 {
            let w = c.who("root", &format!("id{i}")).unwrap();
            let started = bamboo_domain::AgentEvent::SubAgentStarted {
                parent_session_id: "root".into(),
                child_session_id: format!("id{i}"),
                title: None,
            };
            c.apply(&w, &started, chrono::Utc::now());
        }
        let area = StatusArea::new(Style {
            colour: false,
            sanitize: true,
        });
        let lines = area.lines(&c, now);
        assert!(
            lines[0].contains("1 queued · 7 running · 0 done"),
            "{lines:?}"
        );
        assert!(lines[1].contains("[c0] running"), "{lines:?}");
        assert_eq!(lines.len(), 1 + MAX_CHILD_LINES + 1);
        assert!(lines[7].contains("and 1 more"));
    }

    #[test]
    fn a_pool_run_is_queued_in_the_pool_until_a_worker_takes_it() {
        let mut c = Children::pooled();
        c.add("id0".into(), "c0".into(), None);
        let w = c.who("root", "id0").unwrap();
        let now = chrono::Utc::now();
        let started = bamboo_domain::AgentEvent::SubAgentStarted {
            parent_session_id: "root".into(),
            child_session_id: "id0".into(),
            title: None,
        };
        c.apply(&w, &started, now);
        let area = StatusArea::new(Style {
            colour: false,
            sanitize: true,
        });
        let lines = area.lines(&c, Instant::now());
        assert!(
            lines[0].contains("0 queued · 1 queued in the pool · 0 running"),
            "{lines:?}"
        );
        let placed = bamboo_domain::AgentEvent::SubAgentEvent {
            parent_session_id: "root".into(),
            child_session_id: "id0".into(),
            event: Box::new(bamboo_domain::AgentEvent::Placed {
                placement: "pool".into(),
                worker: "w-7".into(),
                host: Some("gpu-1".into()),
            }),
        };
        c.apply(&w, &placed, now);
        let lines = area.lines(&c, Instant::now());
        assert!(lines[0].contains("0 queued · 1 running"), "{lines:?}");
        assert!(lines[1].contains("on w-7@gpu-1"), "{lines:?}");
    }

    /// C14: the status area shows the running total of what the children
    /// used: a child's own run by its completion, a nested run by its
    /// `complete`.
    #[test]
    fn the_area_shows_the_usage_so_far() {
        use bamboo_domain::{AgentEvent, CompletionStatus, TokenUsage};
        let mut c = Children::default();
        c.add("a".into(), "a".into(), None);
        let run = TokenUsage {
            total_tokens: 1500,
            cost_usd: Some(0.25),
            ..TokenUsage::default()
        };
        let top = c.who("root", "a").unwrap();
        let nested = c.who("a", "g").unwrap();
        let wrapped = AgentEvent::SubAgentEvent {
            parent_session_id: "a".into(),
            child_session_id: "g".into(),
            event: Box::new(AgentEvent::Complete { usage: Some(run) }),
        };
        c.apply(&nested, &wrapped, chrono::Utc::now());
        let done = AgentEvent::SubAgentCompleted {
            parent_session_id: "root".into(),
            child_session_id: "a".into(),
            status: CompletionStatus::Completed,
            error: None,
            result: None,
            usage: Some(Box::new(run)),
            worktree: None,
        };
        c.apply(&top, &done, chrono::Utc::now());
        let area = StatusArea::new(Style {
            colour: false,
            sanitize: true,
        });
        let lines = area.lines(&c, Instant::now());
        assert!(lines[0].ends_with(" · 3.0k tok · $0.5000"), "{lines:?}");
    }
}
