//! The log file format: one JSON object per line.
//!
//! - `{"seq":N,"t":MICROS,"event":{...}}`: event `N`, logged at `MICROS`
//!   (microseconds since the Unix epoch).
//! - `{"gap_from":N}`: events from `N` on are not in the file (the cap was
//!   reached, or a write failed); nothing but `gap_to` lines follows.
//! - `{"gap_to":M}`: the gap reaches at least `M` (written when the log is
//!   synced, so a reopened log knows where its numbering stands).
//!
//! A line cut short by a crash is ignored and cut away on reopen.

use std::sync::Arc;

use bamboo_domain::AgentEvent;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{fast, LoggedEvent};

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    Event(LoggedEvent),
    GapFrom(u64),
    GapTo(u64),
}

#[derive(Deserialize)]
struct Raw {
    seq: Option<u64>,
    t: Option<i64>,
    event: Option<AgentEvent>,
    gap_from: Option<u64>,
    gap_to: Option<u64>,
}

/// Appends an event line; `event_json` is the event already serialized.
pub(crate) fn write_event(buf: &mut Vec<u8>, seq: u64, micros: i64, event_json: &[u8]) {
    write_event_head(buf, seq, micros);
    buf.extend_from_slice(event_json);
    buf.extend_from_slice(EVENT_END);
}

/// Appends what comes before the event's JSON in its line.
pub(crate) fn write_event_head(buf: &mut Vec<u8>, seq: u64, micros: i64) {
    let mut n = itoa::Buffer::new();
    buf.extend_from_slice(br#"{"seq":"#);
    buf.extend_from_slice(n.format(seq).as_bytes());
    buf.extend_from_slice(br#","t":"#);
    buf.extend_from_slice(n.format(micros).as_bytes());
    buf.extend_from_slice(br#","event":"#);
}

/// What ends an event line after the event's JSON.
pub(crate) const EVENT_END: &[u8] = b"}\n";

/// Appends a `gap_from` line.
pub(crate) fn write_gap_from(buf: &mut Vec<u8>, seq: u64) {
    buf.extend_from_slice(br#"{"gap_from":"#);
    buf.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    buf.extend_from_slice(b"}\n");
}

/// Appends a `gap_to` line.
pub(crate) fn write_gap_to(buf: &mut Vec<u8>, seq: u64) {
    buf.extend_from_slice(br#"{"gap_to":"#);
    buf.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    buf.extend_from_slice(b"}\n");
}

/// Parses one line (without its newline); `None` if it is not a log line.
/// The engine's own event lines take a hand-written path; anything else,
/// serde.
pub(crate) fn parse(text: &[u8]) -> Option<Line> {
    parse_sharing(text, &mut fast::Ids::default())
}

/// [`parse`] for consecutive lines: the session ids of wrapped events are
/// shared with the previous line's when equal (see [`fast::Ids`]).
pub(crate) fn parse_sharing(text: &[u8], ids: &mut fast::Ids) -> Option<Line> {
    if let Some((seq, micros, event)) = fast::event_line(text, ids) {
        return Some(Line::Event(LoggedEvent {
            seq,
            time: time_of(micros),
            event: Arc::new(event),
        }));
    }
    parse_with_serde(text)
}

/// [`parse`] by the derived parser alone: the reference the fast path must
/// agree with.
pub(crate) fn parse_with_serde(text: &[u8]) -> Option<Line> {
    let raw: Raw = serde_json::from_slice(text).ok()?;
    match raw {
        Raw {
            seq: Some(seq),
            t: Some(t),
            event: Some(event),
            ..
        } => Some(Line::Event(LoggedEvent {
            seq,
            time: time_of(t),
            event: Arc::new(event),
        })),
        Raw {
            gap_from: Some(n), ..
        } => Some(Line::GapFrom(n)),
        Raw {
            gap_to: Some(n), ..
        } => Some(Line::GapTo(n)),
        _ => None,
    }
}

/// The sequence number of an event line the engine wrote, read from the
/// line's head alone (`{"seq":N,`), so a reader can skip lines it does not
/// want without parsing their event. `None` for any other line: parse it.
pub(crate) fn seq_of(text: &[u8]) -> Option<u64> {
    let (seq, rest) = fast::seq_head(text)?;
    rest.starts_with(b",").then_some(seq)
}

/// The time of a microsecond stamp (the epoch for an impossible one).
pub(crate) fn time_of(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The newest sequence number a line accounts for.
pub(crate) fn last_seq(line: &Line) -> u64 {
    match line {
        Line::Event(e) => e.seq,
        Line::GapFrom(n) => n.saturating_sub(1),
        Line::GapTo(n) => *n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut buf = Vec::new();
        let json = serde_json::to_string(&AgentEvent::token("a\nb")).unwrap();
        write_event(&mut buf, 7, 1_700_000_000_123_456, json.as_bytes());
        write_gap_from(&mut buf, 8);
        write_gap_to(&mut buf, 20);
        let lines: Vec<_> = buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                Line::Event(LoggedEvent {
                    seq: 7,
                    time: time_of(1_700_000_000_123_456),
                    event: Arc::new(AgentEvent::token("a\nb")),
                }),
                Line::GapFrom(8),
                Line::GapTo(20),
            ]
        );
        assert_eq!(lines.iter().map(last_seq).collect::<Vec<_>>(), [7, 7, 20]);
    }

    #[test]
    fn the_bytes_on_disk_are_unchanged() {
        let mut buf = Vec::new();
        write_event(&mut buf, 7, -12, br#"{"type":"complete"}"#);
        write_event(&mut buf, u64::MAX, i64::MIN, b"{}");
        write_gap_from(&mut buf, 8);
        write_gap_to(&mut buf, 20);
        let expected = concat!(
            "{\"seq\":7,\"t\":-12,\"event\":{\"type\":\"complete\"}}\n",
            "{\"seq\":18446744073709551615,\"t\":-9223372036854775808,\"event\":{}}\n",
            "{\"gap_from\":8}\n",
            "{\"gap_to\":20}\n",
        );
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
    }

    #[test]
    fn the_seq_is_read_from_the_head_of_an_event_line() {
        let mut buf = Vec::new();
        write_event(&mut buf, 42, 5, br#"{"type":"complete"}"#);
        assert_eq!(seq_of(&buf), Some(42));
        write_gap_from(&mut buf, 8);
        let gap = buf.split(|b| *b == b'\n').nth(1).unwrap();
        assert_eq!(seq_of(gap), None);
        assert_eq!(seq_of(br#"{"seq":,"t":1}"#), None);
        assert_eq!(seq_of(br#"{"seq":99999999999999999999999,"t":1}"#), None);
        assert_eq!(seq_of(br#"{"seq":12"#), None);
    }

    #[test]
    fn a_torn_line_is_not_a_line() {
        assert_eq!(parse(br#"{"seq":1,"t":5,"event":{"type":"tok"#), None);
        assert_eq!(parse(b""), None);
    }
}
