//! Claude Code's stream-json protocol, one line at a time: what each stdout
//! line means for the run ([`Translator`]), and the lines written to its
//! stdin (a user turn, a permission answer, an interrupt).

use std::collections::{HashMap, HashSet};

use bamboo_domain::{AgentEvent, TokenUsage};
use serde_json::{json, Value};

/// What one stdout line asks of the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Emit this event.
    Emit(AgentEvent),
    /// A `can_use_tool` question: answer it with [`permission_answer`].
    Ask(Question),
    /// A control request this executor does not serve: answer with an error
    /// so the agent does not wait on it.
    Refuse {
        /// The request's id.
        request_id: String,
        /// Its subtype, for the error text.
        subtype: String,
    },
    /// A `result` line: one turn of the conversation ended.
    TurnEnded,
}

/// A permission question from the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The id the answer must carry.
    pub request_id: String,
    /// The tool that wants to run (`Bash`, `Write`, ...).
    pub tool_name: String,
    /// Its input, echoed back as `updatedInput` when allowed.
    pub input: Value,
    /// The agent's own description of the action, when it gave one.
    pub description: Option<String>,
}

impl Question {
    /// What the action touches, for the approval request: the command of a
    /// shell tool, the path of a file tool, else the input as JSON.
    pub fn resource(&self) -> String {
        for key in [
            "command",
            "file_path",
            "path",
            "notebook_path",
            "url",
            "pattern",
        ] {
            if let Some(v) = self.input.get(key).and_then(Value::as_str) {
                return v.to_owned();
            }
        }
        self.input.to_string()
    }

    /// The kind of permission, in the approval chain's words.
    pub fn permission_type(&self) -> &'static str {
        match self.tool_name.as_str() {
            "Bash" | "BashOutput" | "KillShell" => "execute",
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "write",
            "WebFetch" | "WebSearch" => "network",
            _ => "tool",
        }
    }
}

/// What the `result` lines reported, summed over the run's turns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Tokens in, out, and read from / written to the prompt cache.
    pub usage: TokenUsage,
    /// Cost in USD as the agent computed it (the largest cumulative figure).
    pub cost_usd: Option<f64>,
    /// Model turns.
    pub turns: u64,
    /// Tool calls started.
    pub tool_calls: u64,
}

/// The state the stdout lines of one run are read with.
#[derive(Debug, Default)]
pub struct Translator {
    /// The agent's session id, from `init` or `result`.
    pub session_id: Option<String>,
    /// The text of the last `result`.
    pub result: Option<String>,
    /// The last `result` said the turn failed (its subtype, e.g.
    /// `error_max_turns`, or its text).
    pub failure: Option<String>,
    /// The user lines the agent has taken in (echoed back as replays).
    pub replays: usize,
    /// Usage and cost so far.
    pub totals: Totals,
    tool_names: HashMap<String, String>,
    /// Message ids whose text already arrived as partial deltas.
    streamed: HashSet<String>,
    streaming_id: Option<String>,
}

impl Translator {
    /// The actions one stdout line asks for; a line that is not JSON, or of
    /// a type this executor does not use, asks for none.
    pub fn line(&mut self, line: &str) -> Vec<Action> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return Vec::new();
        };
        if let Some(id) = v.get("session_id").and_then(Value::as_str) {
            self.session_id = Some(id.to_owned());
        }
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "stream_event" => self.stream_event(&v["event"]),
            "assistant" => self.assistant(&v["message"]),
            "user" => self.user(&v),
            "control_request" => control_request(&v).into_iter().collect(),
            "result" => self.result(&v),
            _ => Vec::new(),
        }
    }

    fn stream_event(&mut self, ev: &Value) -> Vec<Action> {
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.streaming_id = ev["message"]["id"].as_str().map(str::to_owned);
                Vec::new()
            }
            Some("content_block_delta") if ev["delta"]["type"] == "text_delta" => {
                let text = ev["delta"]["text"].as_str().unwrap_or_default();
                if let Some(id) = &self.streaming_id {
                    self.streamed.insert(id.clone());
                }
                if text.is_empty() {
                    Vec::new()
                } else {
                    vec![Action::Emit(AgentEvent::token(text))]
                }
            }
            _ => Vec::new(),
        }
    }

    fn assistant(&mut self, msg: &Value) -> Vec<Action> {
        let streamed = msg["id"]
            .as_str()
            .is_some_and(|id| self.streamed.contains(id));
        let mut out = Vec::new();
        for block in msg["content"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                // Already shown token by token when partial messages came.
                Some("text") if !streamed => {
                    if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                        out.push(Action::Emit(AgentEvent::token(t)));
                    }
                }
                Some("tool_use") => {
                    let id = block["id"].as_str().unwrap_or_default().to_owned();
                    let name = block["name"].as_str().unwrap_or_default().to_owned();
                    self.tool_names.insert(id.clone(), name.clone());
                    self.totals.tool_calls += 1;
                    out.push(Action::Emit(AgentEvent::ToolStart {
                        tool_call_id: id,
                        tool_name: name,
                        arguments: block["input"].clone(),
                    }));
                }
                _ => {}
            }
        }
        out
    }

    fn user(&mut self, v: &Value) -> Vec<Action> {
        if v["isReplay"] == true {
            self.replays += 1;
            return Vec::new();
        }
        let mut out = Vec::new();
        for block in v["message"]["content"].as_array().into_iter().flatten() {
            if block["type"] != "tool_result" {
                continue;
            }
            let id = block["tool_use_id"].as_str().unwrap_or_default().to_owned();
            let name = self.tool_names.get(&id).cloned().unwrap_or_default();
            let text = content_text(&block["content"]);
            out.push(Action::Emit(if block["is_error"] == true {
                AgentEvent::ToolError {
                    tool_call_id: id,
                    tool_name: name,
                    error: text,
                }
            } else {
                AgentEvent::ToolComplete {
                    tool_call_id: id,
                    tool_name: name,
                    result: text,
                }
            }));
        }
        out
    }

    fn result(&mut self, v: &Value) -> Vec<Action> {
        let u = &v["usage"];
        let n = |key: &str| u[key].as_u64().unwrap_or(0);
        let t = &mut self.totals;
        t.usage.prompt_tokens += n("input_tokens");
        t.usage.completion_tokens += n("output_tokens");
        t.usage.cache_read_tokens += n("cache_read_input_tokens");
        t.usage.cache_write_tokens += n("cache_creation_input_tokens");
        t.usage.total_tokens = t.usage.prompt_tokens
            + t.usage.completion_tokens
            + t.usage.cache_read_tokens
            + t.usage.cache_write_tokens;
        t.turns += v["num_turns"].as_u64().unwrap_or(0);
        if let Some(c) = v["total_cost_usd"].as_f64() {
            t.cost_usd = Some(t.cost_usd.map_or(c, |old: f64| old.max(c)));
        }
        self.result = v["result"].as_str().map(str::to_owned);
        let subtype = v["subtype"].as_str().unwrap_or("success");
        self.failure = if v["is_error"] == true || subtype != "success" {
            Some(match (subtype, &self.result) {
                ("success", Some(text)) => text.clone(),
                _ => subtype.to_owned(),
            })
        } else {
            None
        };
        vec![Action::TurnEnded]
    }
}

fn control_request(v: &Value) -> Option<Action> {
    let request_id = v["request_id"].as_str()?.to_owned();
    let req = &v["request"];
    let subtype = req["subtype"].as_str().unwrap_or_default();
    if subtype != "can_use_tool" {
        return Some(Action::Refuse {
            request_id,
            subtype: subtype.to_owned(),
        });
    }
    Some(Action::Ask(Question {
        request_id,
        tool_name: req["tool_name"].as_str().unwrap_or_default().to_owned(),
        input: req["input"].clone(),
        description: req["description"].as_str().map(str::to_owned),
    }))
}

/// A tool result's text: a string, or the texts of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A user turn (the assignment, or a steering message) as a stdin line.
pub fn user_line(text: &str) -> String {
    json!({"type": "user", "message": {"role": "user", "content": text}}).to_string()
}

/// The answer to a permission question: allow with its input unchanged, or
/// deny with `reason` (the agent shows it to its model).
pub fn permission_answer(q: &Question, allow: Result<(), String>) -> String {
    let response = match allow {
        Ok(()) => json!({"behavior": "allow", "updatedInput": q.input}),
        Err(reason) => json!({"behavior": "deny", "message": reason}),
    };
    json!({"type": "control_response", "response": {
        "subtype": "success", "request_id": q.request_id, "response": response}})
    .to_string()
}

/// The error answer to a control request this executor does not serve.
pub fn refusal(request_id: &str, subtype: &str) -> String {
    json!({"type": "control_response", "response": {
        "subtype": "error", "request_id": request_id,
        "error": format!("control request {subtype:?} is not supported by this host")}})
    .to_string()
}

/// Asks the agent to stop its current turn.
pub fn interrupt_line(request_id: &str) -> String {
    json!({"type": "control_request", "request_id": request_id,
        "request": {"subtype": "interrupt"}})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[Value]) -> (Translator, Vec<Action>) {
        let mut t = Translator::default();
        let mut out = Vec::new();
        for l in lines {
            out.extend(t.line(&l.to_string()));
        }
        (t, out)
    }

    #[test]
    fn text_tools_and_results_become_events_once() {
        let (t, actions) = run(&[
            json!({"type":"system","subtype":"init","session_id":"s-1"}),
            json!({"type":"stream_event","event":{"type":"message_start","message":{"id":"m1"}}}),
            json!({"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hel"}}}),
            json!({"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"hel"}]}}),
            json!({"type":"assistant","message":{"id":"m2","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}),
            json!({"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a.txt"}]}]}}),
            json!({"type":"result","subtype":"success","result":"done","num_turns":2,"total_cost_usd":0.5,
                   "usage":{"input_tokens":10,"output_tokens":4,"cache_read_input_tokens":3,"cache_creation_input_tokens":1}}),
        ]);
        assert_eq!(
            actions,
            vec![
                Action::Emit(AgentEvent::token("hel")),
                Action::Emit(AgentEvent::ToolStart {
                    tool_call_id: "t1".into(),
                    tool_name: "Bash".into(),
                    arguments: json!({"command":"ls"}),
                }),
                Action::Emit(AgentEvent::ToolComplete {
                    tool_call_id: "t1".into(),
                    tool_name: "Bash".into(),
                    result: "a.txt".into(),
                }),
                Action::TurnEnded,
            ]
        );
        assert_eq!(t.session_id.as_deref(), Some("s-1"));
        assert_eq!(t.result.as_deref(), Some("done"));
        assert_eq!(t.failure, None);
        assert_eq!(t.totals.usage.total_tokens, 18);
        assert_eq!((t.totals.turns, t.totals.tool_calls), (2, 1));
        assert_eq!(t.totals.cost_usd, Some(0.5));
    }

    #[test]
    fn questions_errors_and_failed_turns_are_recognised() {
        let (t, actions) = run(&[
            json!({"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"touch x"}}}),
            json!({"type":"control_request","request_id":"r2","request":{"subtype":"hook_callback"}}),
            json!({"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t9","content":"no","is_error":true}]}}),
            json!({"type":"user","isReplay":true,"message":{"content":"steer"}}),
            json!({"type":"result","subtype":"error_max_turns","is_error":true}),
        ]);
        let Action::Ask(q) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (q.resource().as_str(), q.permission_type()),
            ("touch x", "execute")
        );
        assert!(permission_answer(q, Ok(())).contains(r#""updatedInput":{"command":"touch x"}"#));
        assert!(permission_answer(q, Err("no".into())).contains(r#""behavior":"deny""#));
        assert!(
            matches!(&actions[1], Action::Refuse { subtype, .. } if subtype == "hook_callback")
        );
        assert!(
            matches!(&actions[2], Action::Emit(AgentEvent::ToolError { error, .. }) if error == "no")
        );
        assert_eq!(t.replays, 1);
        assert_eq!(t.failure.as_deref(), Some("error_max_turns"));
    }
}
