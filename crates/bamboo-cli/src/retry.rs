//! `--retries N`: a child whose try ended `error` or `timeout` runs again,
//! the same session, up to N more times, after a pause that doubles from 1 s
//! (capped at 30 s) so a flaky service gets time to recover. Cancelled
//! children are not retried: someone (an interrupt, `--halt`) meant it.

use std::collections::HashMap;
use std::time::Duration;

use bamboo_domain::CompletionStatus;
use tokio::time::Instant;

/// The first pause before a retry.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause before a retry.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The pause before try `next` (2 for the first retry).
pub fn backoff(next: u32) -> Duration {
    let doublings = next.saturating_sub(2).min(16);
    FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE)
}

/// Whether a try that ended with `status` may be retried.
pub fn retryable(status: CompletionStatus) -> bool {
    matches!(status, CompletionStatus::Error | CompletionStatus::Timeout)
}

/// Tries per child, and the retries waiting for their time.
#[derive(Debug, Default)]
pub struct Tries {
    /// Tries started per child index (absent: 1).
    count: HashMap<usize, u32>,
    /// Children waiting to run again, and when.
    due: Vec<(Instant, usize)>,
}

impl Tries {
    /// The current try of child `top` (1 for the first).
    pub fn current(&self, top: usize) -> u32 {
        self.count.get(&top).copied().unwrap_or(1)
    }

    /// Schedules child `top` to run again after its backoff; returns the
    /// try it will be and the pause.
    pub fn schedule(&mut self, top: usize) -> (u32, Duration) {
        let next = self.current(top) + 1;
        let pause = backoff(next);
        self.due.push((Instant::now() + pause, top));
        (next, pause)
    }

    /// Counts the try that starts now for child `top`.
    pub fn started_again(&mut self, top: usize) {
        *self.count.entry(top).or_insert(1) += 1;
    }

    /// When the next retry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.iter().map(|(t, _)| *t).min()
    }

    /// Children whose retry is due now.
    pub fn take_due(&mut self) -> Vec<usize> {
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|(t, _)| *t <= now);
        self.due = later;
        ready.into_iter().map(|(_, i)| i).collect()
    }

    /// Retries still waiting.
    pub fn waiting(&self) -> usize {
        self.due.len()
    }

    /// Drops every waiting retry (a halt or an interrupt); returns them.
    pub fn drop_waiting(&mut self) -> Vec<usize> {
        self.due.drain(..).map(|(_, i)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_its_cap() {
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_PAUSE);
    }

    #[test]
    fn only_errors_and_timeouts_are_retried() {
        assert!(retryable(CompletionStatus::Error));
        assert!(retryable(CompletionStatus::Timeout));
        assert!(!retryable(CompletionStatus::Cancelled));
        assert!(!retryable(CompletionStatus::Completed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_retry_comes_due_after_its_pause() {
        let mut t = Tries::default();
        assert_eq!(t.schedule(4), (2, Duration::from_secs(1)));
        assert!(t.take_due().is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.take_due(), vec![4]);
        t.started_again(4);
        assert_eq!(t.current(4), 2);
        assert_eq!(t.waiting(), 0);
    }
}
