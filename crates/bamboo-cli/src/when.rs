//! Points in time as `sessions list --since/--until` take them: an RFC 3339
//! time (`2026-12-06T10:00:00Z`; no offset means UTC), a date
//! (`2026-12-06`, UTC, the whole day) or an age (`30m`, `2h`, `7d`: that
//! long before now).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _, Utc};

/// A time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// One instant (a time, or an age counted back from when it was read).
    At(DateTime<Utc>),
    /// A whole UTC day.
    Day(NaiveDate),
}

impl When {
    /// Where a range starting at this time starts: a day at its first
    /// instant.
    pub fn start(self) -> DateTime<Utc> {
        match self {
            Self::At(t) => t,
            Self::Day(d) => Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)),
        }
    }

    /// Where a range ending at this time ends (exclusive): a day includes
    /// all of itself, up to the next midnight.
    pub fn end(self) -> DateTime<Utc> {
        match self {
            Self::At(t) => t,
            Self::Day(d) => d
                .succ_opt()
                .map(|next| Utc.from_utc_datetime(&next.and_time(NaiveTime::MIN)))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// The accepted forms, for error messages.
pub const FORMS: &str =
    "an RFC 3339 time (2026-12-06T10:00:00Z; no offset means UTC), a date (2026-12-06, UTC) or an age (30m, 2h, 7d, 1h30m)";

/// Parses `text` as [`When`], ages counted back from now.
pub fn parse(text: &str) -> Result<When, String> {
    parse_at(text, Utc::now())
}

/// Parses `text` as [`When`], ages counted back from `now`.
pub fn parse_at(text: &str, now: DateTime<Utc>) -> Result<When, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a time: give {FORMS}");
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(When::At(t.with_timezone(&Utc)));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(When::At(Utc.from_utc_datetime(&t)));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(When::Day(d));
    }
    // An age needs a unit: a bare number could be a year or a typo.
    const AGE: [(char, u64); 5] = [
        ('s', 1),
        ('m', 60),
        ('h', 3_600),
        ('d', 86_400),
        ('w', 604_800),
    ];
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs = super::units::sum_units(text, &AGE).ok_or_else(bad)?;
    let age = i64::try_from(secs)
        .ok()
        .and_then(Duration::try_seconds)
        .ok_or_else(bad)?;
    now.checked_sub_signed(age).map(When::At).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> When {
        When::At(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap())
    }

    #[test]
    fn rfc3339_times_with_or_without_an_offset() {
        assert_eq!(
            parse_at("2026-12-06T10:00:00Z", now()),
            Ok(at(2026, 12, 6, 10, 0, 0))
        );
        assert_eq!(
            parse_at("2026-12-06T11:30:00+01:30", now()),
            Ok(at(2026, 12, 6, 10, 0, 0)),
            "an offset is converted to UTC"
        );
        assert_eq!(
            parse_at("2026-12-06T10:00:00", now()),
            Ok(at(2026, 12, 6, 10, 0, 0)),
            "no offset: UTC"
        );
        assert_eq!(
            parse_at("2026-12-06 10:00", now()),
            Ok(at(2026, 12, 6, 10, 0, 0))
        );
    }

    #[test]
    fn a_date_is_the_whole_utc_day() {
        let day = parse_at("2026-12-06", now()).unwrap();
        assert_eq!(
            day.start(),
            Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap()
        );
        assert_eq!(
            day.end(),
            Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap()
        );
        let t = at(2026, 12, 6, 10, 0, 0);
        assert_eq!((t.start(), t.end()), (t.start(), t.start()));
    }

    #[test]
    fn ages_count_back_from_now() {
        assert_eq!(parse_at("30m", now()), Ok(at(2026, 12, 6, 11, 30, 0)));
        assert_eq!(parse_at("2h", now()), Ok(at(2026, 12, 6, 10, 0, 0)));
        assert_eq!(parse_at("7d", now()), Ok(at(2026, 11, 29, 12, 0, 0)));
        assert_eq!(parse_at("1w", now()), Ok(at(2026, 11, 29, 12, 0, 0)));
        assert_eq!(parse_at("1h30m", now()), Ok(at(2026, 12, 6, 10, 30, 0)));
        assert_eq!(parse_at(" 90s ", now()), Ok(at(2026, 12, 6, 11, 58, 30)));
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for bad in [
            "",
            "yesterday",
            "90",
            "2026",
            "2026-13-01",
            "2026-12-06T25:00:00Z",
            "5x",
            "h",
            "-2h",
            "99999999999999999999d",
        ] {
            let e = parse_at(bad, now()).unwrap_err();
            assert!(
                e.contains("is not a time")
                    && e.contains("2026-12-06T10:00:00Z")
                    && e.contains("7d"),
                "{bad}: {e}"
            );
        }
    }
}
