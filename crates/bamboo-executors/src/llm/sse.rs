//! Server-sent events from a chat-completions stream, and assembling one
//! assistant turn (text, tool calls, usage) from its chunks.

use bamboo_domain::TokenUsage;
use serde::Deserialize;

/// Splits a byte stream into SSE events and returns each event's `data`
/// (several `data:` lines of one event joined by `\n`). Comments, `event:`,
/// `id:` and `retry:` lines are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; complete events' data are pushed onto `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.data));
                    self.has_data = false;
                }
            } else if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(rest));
                self.has_data = true;
            }
            start = end + 1;
        }
        self.buf.drain(..start);
    }

    /// Ends the stream: an event without its closing blank line still counts.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        if !self.buf.is_empty() {
            self.feed(b"\n", out);
        }
        if self.has_data {
            out.push(std::mem::take(&mut self.data));
            self.has_data = false;
        }
    }
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A tool call the model asked for, assembled from its deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id (generated when the server sent none).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments, a JSON text.
    pub arguments: String,
}

/// What one chunk added.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// New text to show (possibly empty).
    Text(String),
    /// `[DONE]`: the stream is over.
    Done,
}

/// One assistant turn being assembled.
#[derive(Debug, Default)]
pub struct Turn {
    /// The text so far.
    pub content: String,
    /// Tool calls by index.
    pub calls: Vec<ToolCall>,
    /// Usage, when the server reported it.
    pub usage: Option<TokenUsage>,
    /// Why the model stopped, when it said.
    pub finish_reason: Option<String>,
    /// `[DONE]` seen.
    pub done: bool,
}

impl Turn {
    /// Applies one SSE `data` payload. `Err` carries what was malformed, or
    /// the provider's own error message (prefixed `provider error:`).
    pub fn apply(&mut self, payload: &str) -> Result<ChunkOutcome, String> {
        if payload.trim() == "[DONE]" {
            self.done = true;
            return Ok(ChunkOutcome::Done);
        }
        let chunk: Chunk = serde_json::from_str(payload).map_err(|e| {
            let shown: String = payload.chars().take(120).collect();
            format!("a data line is not a chat-completions chunk ({e}): {shown:?}")
        })?;
        if let Some(err) = chunk.error {
            let msg = err
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| err.to_string());
            return Err(format!("provider error: {msg}"));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut text = String::new();
        for choice in chunk.choices {
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(t) = delta.content {
                text.push_str(&t);
            }
            for (pos, d) in delta.tool_calls.into_iter().flatten().enumerate() {
                self.apply_call(d, pos);
            }
        }
        self.content.push_str(&text);
        Ok(ChunkOutcome::Text(text))
    }

    fn apply_call(&mut self, d: ToolCallDelta, pos: usize) {
        let index = d.index.unwrap_or(pos);
        if index >= self.calls.len() {
            // Bounded by the stream itself; an absurd index is still one entry per delta.
            self.calls
                .resize_with(index.min(self.calls.len() + 64) + 1, ToolCall::default);
        }
        let index = index.min(self.calls.len() - 1);
        let call = &mut self.calls[index];
        if let Some(id) = d.id.filter(|s| !s.is_empty()) {
            call.id = id;
        }
        if let Some(f) = d.function {
            if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                if call.name.is_empty() {
                    call.name = name;
                }
            }
            if let Some(args) = f.arguments {
                call.arguments.push_str(&args);
            }
        }
    }

    /// The tool calls with a name, ids filled in where the server gave none.
    pub fn finished_calls(&mut self) -> Vec<ToolCall> {
        let mut calls: Vec<ToolCall> = std::mem::take(&mut self.calls)
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .collect();
        for (i, c) in calls.iter_mut().enumerate() {
            if c.id.is_empty() {
                c.id = format!("call_{i}");
            }
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_multi_line_data() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.feed(b": comment\r\ndata: {\"a\"", &mut out);
        assert!(out.is_empty());
        p.feed(
            b":1}\r\n\r\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]",
            &mut out,
        );
        assert_eq!(out, vec!["{\"a\":1}", "one\ntwo"]);
        p.finish(&mut out);
        assert_eq!(out[2], "[DONE]");
    }

    #[test]
    fn tool_calls_assemble_by_index() {
        let mut t = Turn::default();
        for p in [
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"list_dir","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"read_file","arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"x\"}"}}]}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        ] {
            t.apply(p).expect("chunk");
        }
        assert_eq!(t.apply("[DONE]"), Ok(ChunkOutcome::Done));
        assert_eq!(t.content, "Hi");
        assert_eq!(t.usage.map(|u| u.total_tokens), Some(3));
        let calls = t.finished_calls();
        assert_eq!(calls[0].arguments, r#"{"path":"x"}"#);
        assert_eq!(
            (calls[1].id.as_str(), calls[1].name.as_str()),
            ("b", "list_dir")
        );
    }

    #[test]
    fn garbage_and_error_chunks_are_reported() {
        let mut t = Turn::default();
        assert!(t
            .apply("<html>")
            .expect_err("must fail")
            .contains("not a chat-completions chunk"));
        let e = t
            .apply(r#"{"error":{"message":"overloaded"}}"#)
            .expect_err("must fail");
        assert_eq!(e, "provider error: overloaded");
    }
}
