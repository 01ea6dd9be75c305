//! A child's usage across its runs (tokens, cache tokens, cost, turns, tool
//! calls) and the coding agent session its next run resumes, both kept in
//! the child session's metadata so they survive restarts.

use bamboo_domain::{Session, TokenUsage};

/// Metadata key of a child's usage totals (a [`TokenUsage`] object).
pub const USAGE_KEY: &str = "usage";
/// Metadata key of the coding agent's session id (a string).
pub const AGENT_SESSION_KEY: &str = "agent_session_id";

/// The usage totals of `session` over all its runs so far (zero when none).
pub fn totals(session: &Session) -> TokenUsage {
    session
        .metadata
        .get(USAGE_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The agent session a run of `session` resumes, if an earlier run left one.
pub fn agent_session(session: &Session) -> Option<String> {
    session
        .metadata
        .get(AGENT_SESSION_KEY)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// Adds one run's usage to the child's totals and keeps its agent session.
pub(crate) fn record_run(
    session: &mut Session,
    usage: Option<&TokenUsage>,
    agent_session: Option<String>,
) {
    if let Some(u) = usage {
        let mut total = totals(session);
        total.add(u);
        if let Ok(v) = serde_json::to_value(total) {
            session.metadata.insert(USAGE_KEY.into(), v);
        }
    }
    if let Some(id) = agent_session {
        session
            .metadata
            .insert(AGENT_SESSION_KEY.into(), serde_json::Value::String(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_add_up_and_the_last_agent_session_is_kept() {
        let mut s = Session::new_root("r");
        let run = TokenUsage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cost_usd: Some(0.25),
            turns: 2,
            tool_calls: 1,
            ..TokenUsage::default()
        };
        record_run(&mut s, Some(&run), Some("a".into()));
        record_run(&mut s, Some(&run), Some("b".into()));
        record_run(&mut s, None, None);
        let t = totals(&s);
        assert_eq!((t.total_tokens, t.turns, t.tool_calls), (30, 4, 2));
        assert_eq!(t.cost_usd, Some(0.5));
        assert_eq!(agent_session(&s).as_deref(), Some("b"));
    }
}
