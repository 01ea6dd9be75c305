//! A hand-written parser for the event lines this engine writes itself, in
//! the exact shape `line::write_event` gives them:
//! `{"seq":N,"t":M,"event":{"type":"sub_agent_event","parent_session_id":"P","child_session_id":"C","event":{"type":"token","content":"..."}}}`
//! and the other events with serde on the event alone. The derived parser
//! buffers every event through serde's `Content` (the tagged enum with an
//! untagged fallback), which makes a reader that fell behind the ring several
//! times slower than the log it reads.
//!
//! Contract: `Some` only for a line the serde path parses to the same event;
//! anything else (another key order, whitespace, escapes it does not decode
//! itself, odd numbers) is `None`, and the caller asks serde. It never
//! rejects a line.

use std::sync::Arc;

use bamboo_domain::AgentEvent;

/// The session ids of the last wrapped event parsed: consecutive lines of a
/// log mostly belong to the same run, so a reader going through a file
/// shares one copy of each id instead of allocating two per line.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    parent: Option<Arc<str>>,
    child: Option<Arc<str>>,
}

/// `(seq, micros, event)` of an event line in the engine's own layout.
pub(crate) fn event_line(text: &[u8], ids: &mut Ids) -> Option<(u64, i64, AgentEvent)> {
    let (seq, rest) = seq_head(text)?;
    let rest = rest.strip_prefix(br#","t":"#)?;
    let (micros, rest) = signed(rest)?;
    let event = rest.strip_prefix(br#","event":"#)?.strip_suffix(b"}")?;
    Some((seq, micros, event_value(event, ids)?))
}

/// The sequence number at the head of an event line (`{"seq":N`), and what
/// follows it.
pub(crate) fn seq_head(text: &[u8]) -> Option<(u64, &[u8])> {
    unsigned(text.strip_prefix(br#"{"seq":"#)?)
}

/// An event object: a wrapped child event or a token by hand, any other
/// object by serde on the event alone. Only objects: `null` means "no
/// event" to the line parser but an unknown event to `AgentEvent`.
fn event_value(text: &[u8], ids: &mut Ids) -> Option<AgentEvent> {
    if !text.starts_with(b"{") {
        return None;
    }
    if let Some(event) = sub_agent_event(text, ids).or_else(|| token(text)) {
        return Some(event);
    }
    serde_json::from_slice(text).ok()
}

/// `{"type":"sub_agent_event","parent_session_id":"P","child_session_id":"C","event":{...}}`.
fn sub_agent_event(text: &[u8], ids: &mut Ids) -> Option<AgentEvent> {
    let rest = text.strip_prefix(br#"{"type":"sub_agent_event","parent_session_id":"#)?;
    let (parent, rest) = shared(rest, &mut ids.parent)?;
    let rest = rest.strip_prefix(br#","child_session_id":"#)?;
    let (child, rest) = shared(rest, &mut ids.child)?;
    let inner = rest.strip_prefix(br#","event":"#)?.strip_suffix(b"}")?;
    Some(AgentEvent::SubAgentEvent {
        parent_session_id: parent,
        child_session_id: child,
        event: Box::new(event_value(inner, ids)?),
    })
}

/// A string literal like [`string`], as a shared string: `last` when it
/// holds the same text (then nothing is allocated), else a new one that
/// replaces it.
fn shared<'t>(text: &'t [u8], last: &mut Option<Arc<str>>) -> Option<(Arc<str>, &'t [u8])> {
    let (value, rest): (Arc<str>, _) = match plain_string(text) {
        Some((plain, rest)) => match last.as_ref() {
            Some(known) if **known == *plain => return Some((known.clone(), rest)),
            _ => (plain.into(), rest),
        },
        None => {
            let (value, rest) = string(text)?;
            (value.into(), rest)
        }
    };
    *last = Some(value.clone());
    Some((value, rest))
}

/// A string literal without escapes or control characters at the start of
/// `text` (then its bytes are the string), and what follows; `None` when it
/// has either (or is not a string).
fn plain_string(text: &[u8]) -> Option<(&str, &[u8])> {
    let body = text.strip_prefix(b"\"")?;
    let quote = memchr::memchr(b'"', body)?;
    let plain = body[..quote]
        .iter()
        .fold(true, |ok, b| ok & (*b != b'\\') & (*b >= 0x20));
    if !plain {
        return None;
    }
    Some((
        std::str::from_utf8(&body[..quote]).ok()?,
        &body[quote + 1..],
    ))
}

/// `{"type":"token","content":"..."}`.
fn token(text: &[u8]) -> Option<AgentEvent> {
    let rest = text.strip_prefix(br#"{"type":"token","content":"#)?;
    let (content, rest) = string(rest)?;
    (rest == b"}").then_some(AgentEvent::Token { content })
}

/// A JSON string literal at the start of `text`, decoded, and what follows.
fn string(text: &[u8]) -> Option<(String, &[u8])> {
    // The common case: no escape and no control character before the first
    // quote, so that quote closes the string and the bytes are the string.
    if let Some((plain, rest)) = plain_string(text) {
        return Some((plain.to_owned(), rest));
    }
    let body = text.strip_prefix(b"\"")?;
    // Escapes or control characters: find the closing quote, and let serde
    // decide, exactly as the full parse would.
    let mut i = 0;
    let end = loop {
        match *body.get(i)? {
            b'"' => break i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    };
    let value = serde_json::from_slice(text.get(..end + 1)?).ok()?;
    Some((value, &body[end..]))
}

/// A non-negative integer as serde reads a `u64`: digits, no leading zero,
/// no overflow.
fn unsigned(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && text[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for d in &text[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, &text[digits..]))
}

/// An integer as serde reads an `i64` (negative zero is left to serde).
fn signed(text: &[u8]) -> Option<(i64, &[u8])> {
    match text.strip_prefix(b"-") {
        Some(rest) => {
            let (n, rest) = unsigned(rest)?;
            let n = i64::try_from(n).ok()?;
            (n != 0).then_some((-n, rest))
        }
        None => {
            let (n, rest) = unsigned(text)?;
            Some((i64::try_from(n).ok()?, rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::line::{parse, parse_with_serde, write_event};
    use super::*;

    /// Event objects of every kind, in the engine's own layout and others.
    const EVENTS: &[&str] = &[
        r#"{"type":"token","content":"w "}"#,
        r#"{"type":"token","content":""}"#,
        r#"{"type":"token","content":"quote \" backslash \\ newline \n tab \t \u00e9 \ud83d\ude00 é 😀"}"#,
        r#"{"type":"token","content":"\/"}"#,
        r#"{"type":"token","content":5}"#,
        r#"{"type":"token","content":"x","extra":1}"#,
        r#"{"type":"token"}"#,
        r#"{"content":"x","type":"token"}"#,
        r#"{"type":"tool_start","tool_call_id":"1","tool_name":"sh","arguments":{"b":1,"a":[1.5,-2,1e300,18446744073709551616,null,true]}}"#,
        r#"{"type":"tool_complete","tool_call_id":"1"}"#,
        r#"{"type":"tool_error","tool_call_id":"1","tool_name":"sh","error":"no"}"#,
        r#"{"type":"complete"}"#,
        r#"{"type":"complete","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        r#"{"type":"error","message":"boom"}"#,
        r#"{"type":"sub_agent_started","parent_session_id":"p","child_session_id":"c","title":"t"}"#,
        r#"{"type":"sub_agent_heartbeat","parent_session_id":"p","child_session_id":"c","timestamp":"2026-01-01T00:00:00Z"}"#,
        r#"{"type":"sub_agent_completed","parent_session_id":"p","child_session_id":"c","status":"completed"}"#,
        r#"{"type":"child_approval_requested","child_session_id":"c","request_id":"r","tool_name":"sh","permission":"execute","resource":"/"}"#,
        r#"{"type":"events_truncated","session_id":"p","first_seq":1,"last_seq":2,"reason":"cap"}"#,
        r#"{"type":"from_the_future","x":[1,2]}"#,
        r#"{"no_type":true}"#,
        r#"{}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"w "}}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p\"q","child_session_id":"c\\d","event":{"type":"token","content":"a\nb"}}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"sub_agent_event","parent_session_id":"c","child_session_id":"g","event":{"type":"complete"}}}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"mystery","n":1}}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":null}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":5}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":[]}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c"}"#,
        r#"{"type":"sub_agent_event","parent_session_id":5,"child_session_id":"c","event":{"type":"complete"}}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"x"},"parent_session_id":"q"}"#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"x"}} "#,
        r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"x"}}}"#,
        r#"{ "type":"token","content":"x"}"#,
        "{\"type\":\"token\",\"content\":\"raw\ttab\"}",
        "{\"type\":\"token\",\"content\":\"raw\u{1}control\"}",
        "null",
        "5",
        "\"s\"",
        "[]",
    ];

    /// Line heads: the engine's own, and others serde reads or rejects.
    const HEADS: &[&str] = &[
        r#"{"seq":1,"t":1700000000123456,"event":"#,
        r#"{"seq":0,"t":0,"event":"#,
        r#"{"seq":18446744073709551615,"t":-9223372036854775808,"event":"#,
        r#"{"seq":18446744073709551616,"t":1,"event":"#,
        r#"{"seq":7,"t":9223372036854775808,"event":"#,
        r#"{"seq":7,"t":-5,"event":"#,
        r#"{"seq":7,"t":-0,"event":"#,
        r#"{"seq":07,"t":1,"event":"#,
        r#"{"seq":7,"t":01,"event":"#,
        r#"{"seq":-7,"t":1,"event":"#,
        r#"{"seq":7.0,"t":1,"event":"#,
        r#"{"seq":7,"t":1.5,"event":"#,
        r#"{"seq":7e2,"t":1,"event":"#,
        r#"{"seq":"7","t":1,"event":"#,
        r#"{ "seq":7,"t":1,"event":"#,
        r#"{"t":1,"seq":7,"event":"#,
        r#"{"seq":7,"t":1,"x":0,"event":"#,
        r#"{"seq":7,"event":"#,
    ];

    fn check(line: &[u8]) {
        assert_eq!(
            parse(line),
            parse_with_serde(line),
            "the fast path and serde disagree on {:?}",
            String::from_utf8_lossy(line)
        );
    }

    #[test]
    fn the_fast_path_reads_every_line_as_serde_does() {
        for head in HEADS {
            for event in EVENTS {
                for tail in ["}", "} ", "}}", ",\"seq\":9}", ",\"gap_from\":3}", ""] {
                    check(format!("{head}{event}{tail}").as_bytes());
                }
            }
        }
        for other in [
            r#"{"gap_from":8}"#,
            r#"{"gap_to":20}"#,
            r#"{"seq":1,"t":5,"event":null}"#,
            r#"{"seq":1,"t":5}"#,
            "",
            "{",
            "not json",
        ] {
            check(other.as_bytes());
        }
    }

    #[test]
    fn torn_and_damaged_lines_are_not_lines_and_never_panic() {
        let mut line = Vec::new();
        let event = r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"é\"\\x"}}"#;
        write_event(&mut line, 12, 34, event.as_bytes());
        line.pop(); // the newline
        assert!(parse(&line).is_some());
        for cut in 0..line.len() {
            check(&line[..cut]);
            assert_eq!(parse(&line[..cut]), None, "a torn line at {cut}");
        }
        // Invalid UTF-8 inside a string, and every byte flipped in turn.
        let mut bad = line.clone();
        let at = bad.iter().position(|b| *b == b'x').unwrap();
        bad[at] = 0xff;
        check(&bad);
        assert_eq!(parse(&bad), None);
        for i in 0..line.len() {
            let mut flipped = line.clone();
            flipped[i] ^= 0x20;
            check(&flipped);
        }
    }

    #[test]
    fn the_engine_s_own_lines_take_the_fast_path() {
        for event in [
            r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"w "}}"#,
            r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"complete"}}"#,
            r#"{"type":"token","content":"a\"b"}"#,
            r#"{"type":"sub_agent_started","parent_session_id":"p","child_session_id":"c"}"#,
        ] {
            let mut line = Vec::new();
            write_event(&mut line, 3, -4, event.as_bytes());
            line.pop();
            let (seq, micros, parsed) =
                event_line(&line, &mut Ids::default()).expect("the fast path takes it");
            assert_eq!((seq, micros), (3, -4));
            let expected: AgentEvent = serde_json::from_str(event).unwrap();
            assert_eq!(parsed, expected);
        }
    }

    #[test]
    fn consecutive_lines_share_equal_ids_and_only_those() {
        let line = |child: &str| {
            let event = format!(
                r#"{{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"{child}","event":{{"type":"token","content":"w"}}}}"#
            );
            let mut line = Vec::new();
            write_event(&mut line, 1, 1, event.as_bytes());
            line.pop();
            line
        };
        let ids_of = |e: AgentEvent| match e {
            AgentEvent::SubAgentEvent {
                parent_session_id,
                child_session_id,
                ..
            } => (parent_session_id, child_session_id),
            other => panic!("not wrapped: {other:?}"),
        };
        let mut ids = Ids::default();
        let (p1, c1) = ids_of(event_line(&line("c"), &mut ids).unwrap().2);
        let (p2, c2) = ids_of(event_line(&line("c"), &mut ids).unwrap().2);
        let (p3, c3) = ids_of(event_line(&line("d"), &mut ids).unwrap().2);
        assert!(Arc::ptr_eq(&p1, &p2) && Arc::ptr_eq(&p2, &p3));
        assert!(Arc::ptr_eq(&c1, &c2));
        assert_eq!((&*c2, &*c3), ("c", "d"));
    }
}
