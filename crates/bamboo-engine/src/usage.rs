//! A child's usage across its runs (tokens, cache tokens, cost, turns, tool
//! calls) and the coding agent session its next run resumes, both kept in
//! the child session's metadata so they survive restarts.

use bamboo_domain::{Session, TokenUsage};

/// Metadata key of a child's usage totals (a [`TokenUsage`] object).
pub const USAGE_KEY: &str = "usage";
/// Metadata key of the coding agent's session id (a string).
pub(crate) const AGENT_SESSION_KEY: &str = "agent_session_id";

/// The usage totals of `session` over all its runs so far (zero when none).
pub fn totals(session: &Session) -> TokenUsage {
    session
        .metadata
        .get(USAGE_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The agent session a run of `session` resumes, if an earlier run left one.
pub(crate) fn agent_session(session: &Session) -> Option<String> {
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

/// Why the child's totals are over one of its budgets (`max_tokens`,
/// `max_cost_usd`), naming the budget and by how much; `None` within them.
pub(crate) fn over_budget(session: &Session) -> Option<String> {
    let info = session.child.as_ref()?;
    let used = totals(session);
    if let Some(limit) = info.max_tokens {
        if used.total_tokens > limit {
            return Some(format!(
                "budget max_tokens exceeded: the child used {} tokens, {} over its limit of {limit}; raise --max-tokens (max_tokens) or give it less to do",
                used.total_tokens,
                used.total_tokens - limit
            ));
        }
    }
    if let (Some(limit), Some(cost)) = (info.max_cost_usd, used.cost_usd) {
        if cost > limit {
            return Some(format!(
                "budget max_cost_usd exceeded: the child cost ${cost:.6}, ${:.6} over its limit of ${limit:.6}; raise --max-cost (max_cost_usd) or give it less to do",
                cost - limit
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_name_what_was_passed_and_by_how_much() {
        let root = Session::new_root("r");
        let mut info = bamboo_domain::ChildInfo::new("", "a");
        info.max_tokens = Some(100);
        info.max_cost_usd = Some(0.01);
        let mut s = Session::new_child(&root, info);
        let run = TokenUsage {
            total_tokens: 60,
            cost_usd: Some(0.006),
            ..TokenUsage::default()
        };
        record_run(&mut s, Some(&run), None);
        assert_eq!(over_budget(&s), None);
        record_run(&mut s, Some(&run), None);
        let why = over_budget(&s).unwrap();
        assert!(
            why.contains("max_tokens") && why.contains("20 over"),
            "{why}"
        );
        s.child.as_mut().unwrap().max_tokens = None;
        let why = over_budget(&s).unwrap();
        assert!(
            why.contains("max_cost_usd") && why.contains("$0.002000 over"),
            "{why}"
        );
    }

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
