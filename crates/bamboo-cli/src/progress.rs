//! Progress once the number of children is known: `ended/total`, the rate
//! of children ending per second, and an estimate of the time left. Shown
//! in the status area on a terminal, and with `--progress` as a line on
//! stderr each time a child ends.

use std::time::Duration;

use super::summary::human_duration;

/// `3/10 ended · 1.5/s · ETA 4.7s` (no rate or ETA before the first end).
pub fn text(done: usize, total: usize, elapsed: Duration) -> String {
    let mut s = format!("{done}/{total} ended");
    let secs = elapsed.as_secs_f64();
    if done > 0 && secs > 0.0 {
        let rate = done as f64 / secs;
        s.push_str(&format!(" · {rate:.1}/s"));
        let left = total.saturating_sub(done);
        if left > 0 {
            let eta = Duration::from_secs_f64((left as f64 / rate).min(1e7));
            s.push_str(&format!(" · ETA {}", human_duration(eta)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_follow_the_ends() {
        assert_eq!(text(0, 4, Duration::from_secs(1)), "0/4 ended");
        assert_eq!(
            text(2, 4, Duration::from_secs(4)),
            "2/4 ended · 0.5/s · ETA 4.0s"
        );
        assert_eq!(text(4, 4, Duration::from_secs(2)), "4/4 ended · 2.0/s");
    }
}
