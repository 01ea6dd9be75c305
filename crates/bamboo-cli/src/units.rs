//! Humane durations for `--run-timeout` and `--idle-timeout`: `90`, `90s`,
//! `15m`, `2h`, `1h30m`.

use std::time::Duration;

/// Parses seconds (`90`) or number-unit pairs (`90s`, `15m`, `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration: write seconds (90) or use units s, m, h (90s, 15m, 1h30m)"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return positive(secs).ok_or_else(bad);
    }
    sum_units(text, &[('s', 1), ('m', 60), ('h', 3600)])
        .and_then(positive)
        .ok_or_else(bad)
}

/// Seconds in `text`, number-unit pairs (`1h30m`) with each unit's seconds
/// in `scales`; `None` for anything else or on overflow.
pub fn sum_units(text: &str, scales: &[(char, u64)]) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let scale = scales.iter().find(|(u, _)| *u == c)?.1;
        let n: u64 = number.parse().ok()?;
        number.clear();
        total = n.checked_mul(scale).and_then(|v| total.checked_add(v))?;
    }
    number.is_empty().then_some(total)
}

fn positive(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Bytes free to this user on the file system holding `path`; `None` when
/// the system cannot say.
pub fn free_space(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() * stat.fragment_size())
}

/// `512 B`, `3.0 KiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `n` and the noun in the form that goes with it: `1 child`, `2 children`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_units_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn nonsense_and_zero_are_refused_with_the_accepted_forms() {
        for bad in ["", "0", "abc", "5x", "m", "10m5", "-3"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("units s, m, h"), "{bad}: {e}");
        }
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn counts_take_the_noun_that_goes_with_them() {
        assert_eq!(count(1, "child", "children"), "1 child");
        assert_eq!(count(0, "child", "children"), "0 children");
        assert_eq!(count(3, "run", "runs"), "3 runs");
    }
}
