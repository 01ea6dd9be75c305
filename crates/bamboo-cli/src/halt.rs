//! `--halt WHEN,fail=K|success=K` (GNU parallel's): when the run stops early,
//! and how. `now` cancels the running children at once; `soon` cancels only
//! those still queued and lets the running ones finish. A child counts as
//! failed once its last try failed (`--retries` first).

use std::fmt;

/// When a triggered halt takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Cancel every open child at once.
    Now,
    /// Start nothing new; the running children finish.
    Soon,
}

/// What triggers a halt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// After this many children failed (after their retries).
    Fail(usize),
    /// After this many children completed.
    Success(usize),
}

/// A halt policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    /// Now or soon.
    pub when: When,
    /// Fail or success count.
    pub trigger: Trigger,
}

impl Halt {
    /// Whether `failed` final failures and `completed` children trip it.
    pub fn tripped(&self, failed: usize, completed: usize) -> bool {
        match self.trigger {
            Trigger::Fail(k) => failed >= k,
            Trigger::Success(k) => completed >= k,
        }
    }

    /// A halt on success ends the run as a success (exit 0) even though the
    /// children it cancelled did not complete, as in GNU parallel.
    pub fn on_success(&self) -> bool {
        matches!(self.trigger, Trigger::Success(_))
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.when {
            When::Now => "now",
            When::Soon => "soon",
        };
        match self.trigger {
            Trigger::Fail(k) => write!(f, "{when},fail={k}"),
            Trigger::Success(k) => write!(f, "{when},success={k}"),
        }
    }
}

/// Parses `now,fail=K`, `soon,fail=K`, `now,success=K`, `soon,success=K`
/// (K ≥ 1), the value of `--halt`.
pub fn parse(text: &str) -> Result<Halt, String> {
    let usage = || {
        format!(
            "--halt {text:?}: expected WHEN,fail=K or WHEN,success=K with WHEN `now` or `soon` \
             and K ≥ 1, e.g. --halt now,fail=1"
        )
    };
    let (when, rule) = text.split_once(',').ok_or_else(usage)?;
    let when = match when.trim() {
        "now" => When::Now,
        "soon" => When::Soon,
        _ => return Err(usage()),
    };
    let (what, count) = rule.split_once('=').ok_or_else(usage)?;
    let k: usize = count.trim().parse().map_err(|_| usage())?;
    if k == 0 {
        return Err(usage());
    }
    let trigger = match what.trim() {
        "fail" => Trigger::Fail(k),
        "success" => Trigger::Success(k),
        _ => return Err(usage()),
    };
    Ok(Halt { when, trigger })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gnu_parallel_forms_parse_and_others_are_refused() {
        let h = parse("now,fail=1").unwrap();
        assert_eq!((h.when, h.trigger), (When::Now, Trigger::Fail(1)));
        assert_eq!(
            parse("soon,success=2").unwrap().trigger,
            Trigger::Success(2)
        );
        assert_eq!(parse("soon,fail=3").unwrap().to_string(), "soon,fail=3");
        for bad in [
            "now",
            "later,fail=1",
            "now,fail=0",
            "now,fail=x",
            "now,oops=1",
        ] {
            assert!(parse(bad).unwrap_err().contains("--halt"), "{bad}");
        }
    }

    #[test]
    fn it_trips_at_the_count() {
        let h = parse("now,fail=2").unwrap();
        assert!(!h.tripped(1, 5));
        assert!(h.tripped(2, 0));
        assert!(parse("now,success=1").unwrap().tripped(0, 1));
    }
}
