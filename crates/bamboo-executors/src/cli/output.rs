//! Turning a CLI program's stdout into events and a bounded result.

use bamboo_domain::AgentEvent;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Most stdout bytes kept for the result. Past it the *tail* is kept (a CLI's
/// answer comes last), prefixed with a line saying how many bytes were dropped.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;
/// Longest stdout line handled as one; a longer one is split into pieces of
/// this size, each its own event, so one runaway line cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Classifies one stdout line (without its newline): a JSON object with a
/// string `type` passes through as that event; anything else is a `token`
/// with the line plus `"\n"`. Also returns the `result` string of a
/// `{"type":"result",...}` line.
pub fn line_event(line: &str) -> (AgentEvent, Option<String>) {
    if line.trim_start().starts_with('{') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(kind) = value.get("type").and_then(|t| t.as_str()) {
                let result = (kind == "result")
                    .then(|| value.get("result").and_then(|r| r.as_str()))
                    .flatten()
                    .map(str::to_owned);
                if let Ok(event) = serde_json::from_value::<AgentEvent>(value) {
                    return (event, result);
                }
            }
        }
    }
    let mut content = String::with_capacity(line.len() + 1);
    content.push_str(line);
    content.push('\n');
    (AgentEvent::Token { content }, None)
}

/// Accumulates stdout for the result, keeping at most about
/// [`MAX_RESULT_BYTES`] (the tail), and remembers the last result line.
#[derive(Debug)]
pub struct OutputCollector {
    buf: Vec<u8>,
    cap: usize,
    dropped: u64,
    result_line: Option<String>,
    saw_complete: bool,
}

impl OutputCollector {
    /// A collector keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            dropped: 0,
            result_line: None,
            saw_complete: false,
        }
    }

    /// Records one raw line (with or without its newline) and returns its event.
    pub fn push_line(&mut self, raw: &[u8]) -> AgentEvent {
        self.keep(raw);
        let text = String::from_utf8_lossy(raw);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (event, result) = line_event(line);
        if result.is_some() {
            self.result_line = result;
        }
        if matches!(event, AgentEvent::Complete { .. }) {
            self.saw_complete = true;
        }
        event
    }

    fn keep(&mut self, raw: &[u8]) {
        self.buf.extend_from_slice(raw);
        // Trim only when twice over the cap, so trimming costs O(1) amortised.
        if self.buf.len() > 2 * self.cap {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > self.cap {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Whether the program printed its own `complete` event.
    pub fn saw_complete(&self) -> bool {
        self.saw_complete
    }

    /// The run's result: the last result line's `result`, else stdout (its
    /// tail, with a truncation marker, when longer than the cap).
    pub fn into_result(mut self) -> String {
        if let Some(r) = self.result_line {
            return r;
        }
        self.trim();
        // Do not start in the middle of a UTF-8 character.
        let start = self
            .buf
            .iter()
            .take(4)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count();
        let dropped = self.dropped + start as u64;
        let text = String::from_utf8_lossy(&self.buf[start..]);
        if dropped > 0 {
            format!("[... {dropped} earlier bytes of output truncated ...]\n{text}")
        } else {
            text.into_owned()
        }
    }
}

/// Reads one line into `out` (cleared by the caller), at most `max` bytes;
/// returns the number of bytes read, 0 at end of stream.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    loop {
        let avail = reader.fill_buf().await?;
        if avail.is_empty() {
            return Ok(out.len());
        }
        let (take, done) = take_line(avail, out, max);
        reader.consume(take);
        if done {
            return Ok(out.len());
        }
    }
}

/// Moves the start of `avail` into `out`, up to and including a newline
/// and at most up to `max` bytes in `out`: how much it took, and whether
/// the line is complete (a newline, or `max` reached).
fn take_line(avail: &[u8], out: &mut Vec<u8>, max: usize) -> (usize, bool) {
    let room = max.saturating_sub(out.len());
    let (take, done) = match avail.iter().position(|&b| b == b'\n') {
        Some(i) if i < room => (i + 1, true),
        _ => {
            let take = avail.len().min(room);
            (take, out.len() + take >= max)
        }
    };
    out.extend_from_slice(&avail[..take]);
    (take, done)
}

/// Lines of a stream, read into a buffer that is allocated but never
/// zeroed (a `BufReader` zeroes its whole buffer for every run, which cost
/// a short run more than the reading did).
#[derive(Debug)]
pub struct LineReader<R> {
    source: R,
    buf: bytes::BytesMut,
    capacity: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    /// Reads `source` up to `capacity` bytes at a time.
    pub fn new(source: R, capacity: usize) -> Self {
        Self {
            source,
            buf: bytes::BytesMut::new(),
            capacity,
        }
    }

    /// Reads one line into `out` (cleared by the caller), at most `max`
    /// bytes; returns the number of bytes read, 0 at end of stream. As
    /// [`read_line_bounded`].
    pub async fn next_line(&mut self, out: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
        use bytes::Buf;
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.is_empty() {
                // Reuses the allocation once everything was consumed.
                self.buf.reserve(self.capacity);
                if self.source.read_buf(&mut self.buf).await? == 0 {
                    return Ok(out.len());
                }
            }
            let (take, done) = take_line(&self.buf, out, max);
            self.buf.advance(take);
            if done {
                return Ok(out.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_pass_through_and_others_become_tokens() {
        let (ev, r) = line_event(r#"{"type":"token","content":"hi"}"#);
        assert_eq!(ev, AgentEvent::token("hi"));
        assert!(r.is_none());
        let (ev, _) = line_event(r#"{"type":"plan","steps":[1]}"#);
        assert_eq!(ev.type_name(), Some("plan"));
        let (ev, _) = line_event(r#"{"no_type":1}"#);
        assert_eq!(ev, AgentEvent::token("{\"no_type\":1}\n"));
        let (ev, _) = line_event(r#"{"type":7}"#);
        assert_eq!(ev, AgentEvent::token("{\"type\":7}\n"));
        let (ev, _) = line_event("plain text");
        assert_eq!(ev, AgentEvent::token("plain text\n"));
        let (_, r) = line_event(r#"{"type":"result","result":"done"}"#);
        assert_eq!(r.as_deref(), Some("done"));
    }

    #[test]
    fn result_keeps_the_tail_with_a_marker() {
        let mut c = OutputCollector::new(10);
        for _ in 0..10 {
            c.push_line(b"abcdef\n");
        }
        let r = c.into_result();
        assert!(r.starts_with("[... 60 earlier bytes"), "{r}");
        assert!(r.ends_with("\nabcdef\n"), "{r}");
        let mut c = OutputCollector::new(100);
        c.push_line(b"x\n");
        c.push_line(br#"{"type":"result","result":"final"}"#);
        assert_eq!(c.into_result(), "final");
    }

    #[tokio::test]
    async fn long_lines_are_split() {
        let data = [b'a'; 25];
        let mut r = tokio::io::BufReader::new(&data[..]);
        let mut out = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut out, 10).await.expect("read"),
            10
        );
        out.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut out, 10).await.expect("read"),
            10
        );
        out.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut out, 10).await.expect("read"),
            5
        );
        out.clear();
        assert_eq!(
            read_line_bounded(&mut r, &mut out, 10).await.expect("read"),
            0
        );
    }
    // A line reader with a 4-byte buffer: lines that span reads are joined,
    // long ones split at the bound, and the end of the stream is 0.
    #[tokio::test]
    async fn the_line_reader_joins_lines_across_reads_and_splits_long_ones() {
        let data = b"ab\ncdefgh\n0123456789abcdefghijklmno\nlast";
        let mut r = LineReader::new(&data[..], 4);
        let mut lines = Vec::new();
        loop {
            let mut out = Vec::new();
            if r.next_line(&mut out, 10).await.expect("read") == 0 {
                break;
            }
            lines.push(String::from_utf8(out).expect("utf-8"));
        }
        assert_eq!(
            lines,
            [
                "ab\n",
                "cdefgh\n",
                "0123456789",
                "abcdefghij",
                "klmno\n",
                "last"
            ]
        );
    }
}
