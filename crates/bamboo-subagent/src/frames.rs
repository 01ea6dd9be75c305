//! Frames (protocol.md section 4): one JSON object per WebSocket text message.

use bamboo_domain::{AgentEvent, Message, TaskList, TerminalStatus, TokenBudget};
use serde::{Deserialize, Serialize};

/// Parent-to-child frames, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParentFrame {
    /// Start a run.
    Run(RunRequest),
    /// Cancel the active run.
    Cancel,
    /// In-band steering text for the active run.
    Message {
        /// The steering text.
        text: String,
    },
    /// Answer to an `approval_request`.
    ApprovalReply {
        /// The request's id.
        id: String,
        /// The decision.
        approved: bool,
    },
    /// Answer to a `subagent_request` (extension, 4.3).
    SubagentReply {
        /// The request's id.
        id: String,
        /// Tool result JSON: `{"success":bool,"result":...}`.
        body: serde_json::Value,
    },
}

/// The content of a `run` frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// What to do.
    pub assignment: String,
    /// Reasoning effort hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Full prior transcript, oldest first; omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
    /// The child's context budget: an executor that keeps a conversation
    /// compresses it to stay within (extension; omitted when the child has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<TokenBudget>,
    /// The child's task list, shown to the model (extension; omitted when
    /// the child has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_list: Option<TaskList>,
    /// The coding agent session an earlier run of this child left, for an
    /// executor that resumes it instead of replaying `messages` (extension;
    /// omitted when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_id: Option<String>,
    /// Gated actions the parent approved before sending the run
    /// (extension; omitted when none): an executor about to ask for one of
    /// exactly these goes on without asking, as if the parent had answered
    /// yes. A worker that does not know the field asks as usual.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved: Vec<Approved>,
}

impl RunRequest {
    /// A run of `assignment` with no history.
    pub fn new(assignment: impl Into<String>) -> Self {
        Self {
            assignment: assignment.into(),
            ..Self::default()
        }
    }

    /// Whether the parent approved `body` ahead of the run: its tool and
    /// resource are exactly those of an entry of [`RunRequest::approved`].
    pub fn approves(&self, body: &ApprovalBody) -> bool {
        self.approved
            .iter()
            .any(|a| a.tool_name == body.tool_name && a.resource == body.resource)
    }
}

/// A gated action approved before the run: the `tool_name` and `resource`
/// its approval request would carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approved {
    /// The tool that acts.
    pub tool_name: String,
    /// What it touches, exactly as the request would name it.
    pub resource: String,
}

/// Child-to-parent frames, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChildFrame {
    /// One agent event, verbatim.
    Event {
        /// The event.
        event: AgentEvent,
    },
    /// The run asks for approval of a gated action.
    ApprovalRequest {
        /// Fresh unguessable id (`sa-<uuid>`).
        id: String,
        /// What is asked.
        body: ApprovalBody,
    },
    /// The run asks the parent to spawn a grandchild (extension, 4.3).
    SubagentRequest {
        /// Fresh id.
        id: String,
        /// The SubAgent tool call body.
        body: serde_json::Value,
    },
    /// The run ended; sent after every event of the run.
    Terminal(Terminal),
}

impl ChildFrame {
    /// Parses one frame's text. Same result as `serde_json::from_str`, with
    /// fast paths for a `terminal` frame and for the hot case, an `event`
    /// frame as our worker writes it
    /// (`{"kind":"event","event":...}`, and inside it a plain `token`): the
    /// derived parser buffers each tagged layer before choosing the variant,
    /// which is most of the engine's per-event cost. Anything else, or
    /// anything the fast path is unsure of, takes the derived parser.
    pub fn from_text(text: &str) -> Result<Self, serde_json::Error> {
        if let Some(event) = text
            .strip_prefix(r#"{"kind":"event","event":"#)
            .and_then(|rest| rest.strip_suffix('}'))
            .and_then(fast_event)
        {
            return Ok(Self::Event { event });
        }
        // A terminal frame carries the final answer and the transcript, often
        // the largest text of the run: read straight into its fields, not
        // through the copy the tagged parser buffers first.
        if text.starts_with(r#"{"kind":"terminal","#) {
            if let Ok(terminal) = serde_json::from_str::<Terminal>(text) {
                return Ok(Self::Terminal(terminal));
            }
        }
        serde_json::from_str(text)
    }
}

/// `{"type":"token","content":"..."}` exactly, else the derived parser on the
/// event alone; `None` when that fails too (the caller then reports the
/// error of a full parse).
fn fast_event(text: &str) -> Option<AgentEvent> {
    let token = text
        .strip_prefix(r#"{"type":"token","content":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|s| s.len() >= 2 && s.starts_with('"') && s.ends_with('"'));
    if let Some(literal) = token {
        // No escape and no control character: the text between the quotes
        // is the string itself (the frame's text is already valid UTF-8).
        let inner = &literal[1..literal.len() - 1];
        let plain = !inner.contains('"') && inner.bytes().all(|b| b != b'\\' && b >= 0x20);
        let content = if plain {
            Some(inner.to_owned())
        } else {
            serde_json::from_str::<String>(literal).ok()
        };
        if let Some(content) = content {
            return Some(AgentEvent::Token { content });
        }
    }
    serde_json::from_str(text).ok()
}

/// What an `approval_request` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalBody {
    /// The tool that wants to act.
    #[serde(default)]
    pub tool_name: String,
    /// Kind of permission (`execute`, `write`, ...).
    #[serde(default)]
    pub permission_type: String,
    /// What the action touches.
    #[serde(default)]
    pub resource: String,
    /// A question for a human.
    #[serde(default)]
    pub question: String,
}

/// The end of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Terminal {
    /// How the run ended.
    pub status: TerminalStatus,
    /// The final answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's transcript, when the executor keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Vec<Message>>,
    /// What the run used (tokens, cost, turns, tool calls), when the
    /// executor counts it (extension; omitted otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<bamboo_domain::TokenUsage>,
    /// The coding agent's own session id, which the next run of the same
    /// child resumes (extension; omitted otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_id: Option<String>,
}

impl From<crate::executor::RunOutcome> for Terminal {
    fn from(o: crate::executor::RunOutcome) -> Self {
        Self {
            status: o.status,
            result: o.result,
            error: o.error,
            transcript: o.transcript,
            usage: o.usage,
            agent_session_id: o.agent_session_id,
        }
    }
}

impl ParentFrame {
    /// Serializes the frame to its wire text.
    pub fn to_text(&self) -> String {
        // Serializing these plain enums cannot fail: no maps with non-string keys.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ChildFrame {
    /// Serializes the frame to its wire text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(json: &str) -> ParentFrame {
        let f: ParentFrame = serde_json::from_str(json).unwrap();
        assert_eq!(f.to_text(), json);
        f
    }

    fn child(json: &str) -> ChildFrame {
        let f: ChildFrame = serde_json::from_str(json).unwrap();
        assert_eq!(f.to_text(), json);
        f
    }

    #[test]
    fn parent_frames_match_protocol_literals() {
        assert_eq!(
            parent(r#"{"kind":"run","assignment":"hi"}"#),
            ParentFrame::Run(RunRequest::new("hi"))
        );
        let run = parent(
            r#"{"kind":"run","assignment":"go","reasoning_effort":"high","messages":[{"role":"user","content":"a","created_at":"2026-01-02T03:04:05Z"}]}"#,
        );
        assert!(matches!(run, ParentFrame::Run(r) if r.messages.len() == 1));
        assert_eq!(parent(r#"{"kind":"cancel"}"#), ParentFrame::Cancel);
        parent(r#"{"kind":"message","text":"steer"}"#);
        parent(r#"{"kind":"approval_reply","id":"sa-1","approved":true}"#);
        parent(r#"{"kind":"subagent_reply","id":"x","body":{"success":false,"result":"no"}}"#);
    }

    #[test]
    fn child_frames_match_protocol_literals() {
        child(r#"{"kind":"event","event":{"type":"token","content":"hi "}}"#);
        child(
            r#"{"kind":"approval_request","id":"sa-1","body":{"tool_name":"bash","permission_type":"execute","resource":"ls","question":"ok?"}}"#,
        );
        child(r#"{"kind":"subagent_request","id":"r","body":{"assignment":"x"}}"#);
        let t = child(r#"{"kind":"terminal","status":"completed","result":"echo: hi"}"#);
        assert!(matches!(
            t,
            ChildFrame::Terminal(Terminal {
                status: TerminalStatus::Completed,
                ..
            })
        ));
        child(r#"{"kind":"terminal","status":"error","error":"boom"}"#);
        child(r#"{"kind":"terminal","status":"suspended","transcript":[]}"#);
    }

    #[test]
    fn f7_f8_unknown_roles_and_null_or_array_content_never_reject_a_frame() {
        let odd = r#"[{"role":"developer","content":"rules"},{"role":"user","content":null},{"role":"assistant","content":[{"type":"text","text":"ok"}]},{"content":"no role"}]"#;
        // Read, not round-tripped: the odd shapes are normalised on the way in.
        let run: ParentFrame = serde_json::from_str(&format!(
            r#"{{"kind":"run","assignment":"go","messages":{odd}}}"#
        ))
        .unwrap();
        assert!(matches!(run, ParentFrame::Run(r) if r.messages.len() == 4));
        let t: ChildFrame = serde_json::from_str(&format!(
            r#"{{"kind":"terminal","status":"completed","result":"r","transcript":{odd}}}"#
        ))
        .unwrap();
        assert!(
            matches!(t, ChildFrame::Terminal(t) if t.transcript.as_ref().map(Vec::len) == Some(4))
        );
    }

    #[test]
    fn the_fast_parser_agrees_with_the_derived_one() {
        for text in [
            r#"{"kind":"event","event":{"type":"token","content":"hi "}}"#,
            r#"{"kind":"event","event":{"type":"token","content":"a \"quoted\" \u00e9 }"}}"#,
            r#"{"kind":"event","event":{"type":"token","content":"x","extra":1}}"#,
            r#"{"kind":"event","event":{"type":"token","content":"x"},"z":1}"#,
            r#"{"kind":"event","event":{"type":"tool_start","tool_call_id":"1","tool_name":"t"}}"#,
            r#"{"kind":"event","event":{"type":"new_thing","n":1}}"#,
            r#"{"kind":"terminal","status":"completed","result":"r"}"#,
            r#"{"kind":"terminal","status":"error","error":"e","later":{"x":[1]}}"#,
            r#"{"kind":"terminal","status":"completed","result":"a \"b\"","transcript":[{"role":"user","content":"hi","created_at":"2026-01-01T00:00:00Z"},{"role":"assistant","content":"a \"b\"","created_at":"2026-01-01T00:00:01Z"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            r#"{"status":"completed","kind":"terminal","result":"r"}"#,
            r#"{"kind":"event","event":{"type":"token","content":"x"} }"#,
            r#"{"kind":"event","event":{"type":"token","content":""}}"#,
            r#"{"kind":"event","event":{"type":"token","content":"é 😀 plain"}}"#,
            r#"{"kind":"event","event":{"type":"token","content":"tab\tback\\slash"}}"#,
        ] {
            let fast = ChildFrame::from_text(text).unwrap();
            let slow: ChildFrame = serde_json::from_str(text).unwrap();
            assert_eq!(fast, slow, "{text}");
        }
        for bad in [
            r#"{"kind":"event","event":{"type":"token","content":"x"}"#,
            r#"{"kind":"event","event":{"type":"token","content":"x}}"#,
            r#"{"kind":"event","event":}"#,
            "{\"kind\":\"event\",\"event\":{\"type\":\"token\",\"content\":\"raw\ttab\"}}",
            r#"{"kind":"event","event":{"type":"token","content":"a"b"}}"#,
            r#"{"kind":"terminal","status":"weird"}"#,
            r#"{"kind":"terminal","status":"completed""#,
        ] {
            assert!(ChildFrame::from_text(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<ChildFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_kinds_rejected() {
        let f: ParentFrame = serde_json::from_str(r#"{"kind":"cancel","reason":"x"}"#).unwrap();
        assert_eq!(f, ParentFrame::Cancel);
        assert!(serde_json::from_str::<ParentFrame>(r#"{"kind":"dance"}"#).is_err());
        assert!(
            serde_json::from_str::<ChildFrame>(r#"{"kind":"terminal","status":"weird"}"#).is_err()
        );
        // Unknown event types inside an event frame survive.
        let f: ChildFrame =
            serde_json::from_str(r#"{"kind":"event","event":{"type":"new_thing","n":1}}"#).unwrap();
        assert!(matches!(
            f,
            ChildFrame::Event {
                event: AgentEvent::Unknown(_)
            }
        ));
    }
}
