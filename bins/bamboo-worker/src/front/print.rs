//! Printing children's streams as `[n] ...` lines.

use std::io::Write;

use bamboo_domain::AgentEvent;

/// Prints one child event.
pub fn event(n: usize, event: &AgentEvent) {
    match event {
        AgentEvent::Token { content } => say(n, &format!("token {content:?}")),
        other => say(n, &serde_json::to_string(other).unwrap_or_default()),
    }
}

/// Prints one line for child `n`.
pub fn say(n: usize, line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{n}] {line}");
}
