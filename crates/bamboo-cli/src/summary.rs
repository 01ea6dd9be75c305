//! The table printed at the end: name, status, duration, usage (tokens and
//! cost, when any child reported them), first line of the error; and the
//! root's total usage.

use std::time::{Duration, Instant};

use bamboo_domain::{CompletionStatus, TokenUsage};

use super::children::{total_usage, Child, Phase};
use super::style::first_line;

/// Above this many children only the ones that did not complete get a row.
const FULL_TABLE_MAX: usize = 40;

/// The summary as text lines (no trailing newline per line).
pub fn table(children: &[Child], interrupted: bool, started: Instant) -> Vec<String> {
    let now = Instant::now();
    let with_usage = children.iter().any(|c| c.usage.is_some());
    let rows: Vec<[String; 4]> = children
        .iter()
        .filter(|c| children.len() <= FULL_TABLE_MAX || !(completed(c) || uncreated(c)))
        .map(|c| {
            [
                c.name.clone(),
                status(c).to_owned(),
                with_usage_column(
                    human_duration(c.elapsed(chrono::Utc::now())),
                    with_usage.then(|| c.usage.as_ref().map(usage_cell).unwrap_or_default()),
                ),
                first_line(c.error.as_deref().unwrap_or(""), 80),
            ]
        })
        .collect();
    let mut lines = Vec::new();
    if !rows.is_empty() {
        let mut header = ["NAME", "STATUS", "DURATION", "ERROR"].map(String::from);
        if with_usage {
            header[2] = with_usage_column("DURATION".into(), Some(usage_header()));
        }
        let mut widths = [0; 3];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            lines.push(line.trim_end().to_owned());
        }
    }
    for c in children {
        if let Some(w) = &c.worktree {
            lines.push(worktree_line(&c.name, w));
        }
    }
    let done = children.iter().filter(|c| completed(c)).count();
    if children.len() > FULL_TABLE_MAX && done > 0 {
        lines.push(format!("({done} completed children not listed)"));
    }
    let never = children.iter().filter(|c| uncreated(c)).count();
    if children.len() > FULL_TABLE_MAX && never > 0 {
        lines.push(format!("({never} children never created, not listed)"));
    }
    let mut last = format!(
        "{done} of {} completed in {}",
        super::units::count(children.len(), "run", "runs"),
        human_duration(now.saturating_duration_since(started))
    );
    if let Some(total) = total_usage(children) {
        let cost = total
            .cost_usd
            .map(|c| format!(", ${c:.4}"))
            .unwrap_or_default();
        last.push_str(&format!(
            "; in total {} tokens{cost}, {} turns, {} tool calls",
            total.total_tokens, total.turns, total.tool_calls
        ));
    }
    if interrupted {
        last.push_str(" (interrupted)");
    }
    lines.push(last);
    lines
}

/// Width of the duration column when usage columns follow it.
const DURATION_WIDTH: usize = 8;

/// The duration cell, followed by the usage cells when shown (kept in one
/// cell so the table's column logic stays as it is).
fn with_usage_column(duration: String, usage: Option<String>) -> String {
    match usage {
        Some(u) => format!("{duration:DURATION_WIDTH$}  {u}"),
        None => duration,
    }
}

fn usage_header() -> String {
    format!(
        "{:>8}  {:>10}  {:>5}  {:>5}",
        "TOKENS", "COST", "TURNS", "TOOLS"
    )
}

/// Tokens, cost (`-` when unknown), turns and tool calls, aligned.
fn usage_cell(u: &TokenUsage) -> String {
    let cost = u
        .cost_usd
        .map_or_else(|| "-".into(), |c| format!("${c:.4}"));
    format!(
        "{:>8}  {:>10}  {:>5}  {:>5}",
        u.total_tokens, cost, u.turns, u.tool_calls
    )
}

/// `name: branch bamboo/name at 1a2b3c4 (2 files: a.txt, b.txt)`, or that
/// it changed nothing and left no branch.
pub fn worktree_line(name: &str, w: &bamboo_domain::WorktreeOutcome) -> String {
    match &w.commit {
        Some(commit) => format!(
            "{name}: branch {} at {} ({} file{}: {})",
            w.branch,
            commit.chars().take(7).collect::<String>(),
            w.files.len(),
            if w.files.len() == 1 { "" } else { "s" },
            w.files.join(", ")
        ),
        None => format!("{name}: changed nothing; no branch kept"),
    }
}

fn uncreated(c: &Child) -> bool {
    c.phase == Phase::NotCreated
}

fn completed(c: &Child) -> bool {
    c.phase == Phase::Done(CompletionStatus::Completed)
}

fn status(c: &Child) -> &'static str {
    match c.phase {
        Phase::Done(s) => s.as_str(),
        Phase::Queued => "queued",
        Phase::InPool => "queued in pool",
        Phase::Running => "running",
        Phase::Awaiting => "awaiting approval",
        Phase::NotCreated => "not created",
    }
}

/// `0.4s`, `12.0s`, `3m05s`, `1h02m`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::Children;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(400)), "0.4s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_table_lists_each_child_and_the_first_error_line() {
        let mut c = Children::default();
        c.add("a".into(), "alpha".into(), None);
        c.add("b".into(), "beta".into(), None);
        let t = Instant::now();
        let b = c.who("root", "b").unwrap();
        let done = bamboo_domain::AgentEvent::SubAgentCompleted {
            parent_session_id: "root".into(),
            child_session_id: "b".into(),
            status: CompletionStatus::Error,
            error: Some("kaput\nstderr tail".into()),
            usage: None,
            worktree: None,
        };
        c.apply(&b, &done, chrono::Utc::now());
        let lines = table(c.all(), true, t);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "STATUS", "DURATION", "ERROR"]
        );
        assert!(lines[1].starts_with("alpha  queued"), "{lines:?}");
        assert!(
            lines[2].starts_with("beta   error") && lines[2].ends_with("kaput"),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with("0 of 2 runs completed") && lines[3].ends_with("(interrupted)")
        );
    }
}
