//! `codex exec --json` output, one line at a time: `thread.started`,
//! `item.started` / `item.completed` (agent messages, command executions,
//! file changes, errors), `turn.completed` (usage) and `turn.failed`.

use bamboo_domain::{AgentEvent, TokenUsage};
use serde_json::Value;

/// The state the stdout lines of one run are read with.
#[derive(Debug, Default)]
pub struct Reader {
    /// The agent's thread id (its session), from `thread.started`.
    pub thread_id: Option<String>,
    /// The last agent message: the run's result.
    pub last_message: Option<String>,
    /// Why the turn failed, when it did.
    pub failure: Option<String>,
    /// Usage summed over the turns.
    pub usage: TokenUsage,
}

impl Reader {
    /// The events one stdout line becomes (none for a line that is not
    /// JSON or of a type this executor does not use).
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return Vec::new();
        };
        match v["type"].as_str().unwrap_or_default() {
            "thread.started" => {
                self.thread_id = v["thread_id"].as_str().map(str::to_owned);
                Vec::new()
            }
            "item.started" => self.started(&v["item"]),
            "item.completed" => self.completed(&v["item"]),
            "turn.completed" => {
                let u = &v["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                let cached = n("cached_input_tokens");
                // Codex counts cached tokens inside input_tokens.
                self.usage.prompt_tokens += n("input_tokens").saturating_sub(cached);
                self.usage.cache_read_tokens += cached;
                self.usage.cache_write_tokens += n("cache_write_input_tokens");
                self.usage.completion_tokens += n("output_tokens");
                self.usage.total_tokens = self.usage.prompt_tokens
                    + self.usage.cache_read_tokens
                    + self.usage.cache_write_tokens
                    + self.usage.completion_tokens;
                self.usage.turns += 1;
                Vec::new()
            }
            "turn.failed" => {
                self.failure = Some(
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("the turn failed")
                        .to_owned(),
                );
                Vec::new()
            }
            "error" => {
                let message = v["message"].as_str().unwrap_or("error").to_owned();
                vec![AgentEvent::Error { message }]
            }
            _ => Vec::new(),
        }
    }

    fn started(&mut self, item: &Value) -> Vec<AgentEvent> {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        match item["type"].as_str() {
            Some("command_execution") => {
                self.usage.tool_calls += 1;
                vec![AgentEvent::ToolStart {
                    tool_call_id: id,
                    tool_name: "command_execution".into(),
                    arguments: serde_json::json!({"command": item["command"]}),
                }]
            }
            _ => Vec::new(),
        }
    }

    fn completed(&mut self, item: &Value) -> Vec<AgentEvent> {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        match item["type"].as_str() {
            Some("agent_message") => {
                let text = item["text"].as_str().unwrap_or_default().to_owned();
                self.last_message = Some(text.clone());
                vec![AgentEvent::token(text)]
            }
            Some("command_execution") => {
                let output = item["aggregated_output"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let code = item["exit_code"].as_i64();
                if item["status"] == "completed" && code == Some(0) {
                    vec![AgentEvent::ToolComplete {
                        tool_call_id: id,
                        tool_name: "command_execution".into(),
                        result: output,
                    }]
                } else {
                    vec![AgentEvent::ToolError {
                        tool_call_id: id,
                        tool_name: "command_execution".into(),
                        error: match code {
                            Some(c) => format!("exit code {c}: {output}"),
                            None => {
                                format!("{}: {output}", item["status"].as_str().unwrap_or("failed"))
                            }
                        },
                    }]
                }
            }
            Some("file_change") => {
                self.usage.tool_calls += 1;
                let arguments = serde_json::json!({"changes": item["changes"]});
                let result = item["changes"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|ch| {
                                format!(
                                    "{} {}",
                                    ch["kind"].as_str().unwrap_or("update"),
                                    ch["path"].as_str().unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                vec![
                    AgentEvent::ToolStart {
                        tool_call_id: id.clone(),
                        tool_name: "file_change".into(),
                        arguments,
                    },
                    AgentEvent::ToolComplete {
                        tool_call_id: id,
                        tool_name: "file_change".into(),
                        result,
                    },
                ]
            }
            Some("error") => vec![AgentEvent::Error {
                message: item["message"].as_str().unwrap_or("error").to_owned(),
            }],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_run_becomes_message_command_and_usage() {
        let mut r = Reader::default();
        let mut out = Vec::new();
        for l in [
            r#"{"type":"thread.started","thread_id":"t-1"}"#,
            r#"{"type":"item.started","item":{"id":"i1","type":"command_execution","command":"ls","status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"ls","aggregated_output":"a\n","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"done"}}"#,
            r#"{"type":"turn.completed","usage":{"input_tokens":30,"cached_input_tokens":10,"output_tokens":5}}"#,
        ] {
            out.extend(r.line(l));
        }
        assert!(
            matches!(&out[0], AgentEvent::ToolStart { arguments, .. } if arguments["command"] == "ls")
        );
        assert!(matches!(&out[1], AgentEvent::ToolComplete { result, .. } if result == "a\n"));
        assert_eq!(out[2], AgentEvent::token("done"));
        assert_eq!(r.thread_id.as_deref(), Some("t-1"));
        assert_eq!(r.last_message.as_deref(), Some("done"));
        assert_eq!(
            (
                r.usage.prompt_tokens,
                r.usage.cache_read_tokens,
                r.usage.total_tokens
            ),
            (20, 10, 35)
        );
        assert_eq!((r.usage.turns, r.usage.tool_calls), (1, 1));
        r.line(r#"{"type":"turn.failed","error":{"message":"boom"}}"#);
        assert_eq!(r.failure.as_deref(), Some("boom"));
    }
}
