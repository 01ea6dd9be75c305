//! Agent events (protocol.md section 5): what a run streams to its parent.
//!
//! Tagged by `type` in snake_case. An event whose `type` this build does not know
//! is kept as [`AgentEvent::Unknown`] with its JSON untouched, so a newer worker
//! can stream events through an older parent without loss.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::CompletionStatus;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Token accounting reported by a model server or a coding agent. The
/// fields after `total_tokens` are extensions: omitted when zero or unknown,
/// so a run that reports only tokens looks as it always did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of the two, as the server reports it (an agent's own count adds
    /// its cache tokens).
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Cost in US dollars, when the executor knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Model turns (requests to the model).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turns: u64,
    /// Tool calls started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tool_calls: u64,
}

impl TokenUsage {
    /// Adds `other` to these totals (cost: unknown plus known is known).
    pub fn add(&mut self, other: &TokenUsage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.turns += other.turns;
        self.tool_calls += other.tool_calls;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

/// A child's git worktree as its completion reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeOutcome {
    /// Its branch, `bamboo/<child name>`.
    pub branch: String,
    /// The branch's last commit, when the child changed something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Files changed on the branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The worktree directory is still there.
    #[serde(default)]
    pub kept: bool,
}

/// One event of an agent's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A piece of generated text.
    Token {
        /// The text.
        content: String,
    },
    /// A tool call started.
    ToolStart {
        /// Id of the call.
        tool_call_id: String,
        /// Name of the tool.
        tool_name: String,
        /// Arguments as the model gave them.
        #[serde(default)]
        arguments: serde_json::Value,
    },
    /// A tool call finished.
    ToolComplete {
        /// Id of the call.
        tool_call_id: String,
        /// Name of the tool.
        #[serde(default)]
        tool_name: String,
        /// What the tool returned.
        #[serde(default)]
        result: String,
    },
    /// A tool call failed.
    ToolError {
        /// Id of the call.
        tool_call_id: String,
        /// Name of the tool.
        #[serde(default)]
        tool_name: String,
        /// Why it failed.
        #[serde(default)]
        error: String,
    },
    /// The run's answer is complete.
    Complete {
        /// Token usage when the model server reported it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<TokenUsage>,
    },
    /// The run hit an error.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Where a run runs, once a worker has it: a local worker process, a
    /// resident worker, or a worker of a NATS pool (a pool run is queued
    /// until then).
    Placed {
        /// `local`, `remote` or `pool`.
        placement: String,
        /// Which worker: `pid 1234`, the endpoint, or the pool worker's id.
        worker: String,
        /// The worker's host, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A request to the model (or another service) failed in a way worth
    /// another try, and is tried again after `delay_ms`.
    Retrying {
        /// What is retried, e.g. `model request`.
        what: String,
        /// The try about to be made (2 for the first retry).
        attempt: u32,
        /// The pause before it, in milliseconds.
        delay_ms: u64,
        /// Why, e.g. `429 Too Many Requests`.
        reason: String,
    },
    /// A line a command-line agent wrote to its stderr (warnings, progress),
    /// whatever the run's end. A reader that does not know the type skips it.
    Stderr {
        /// The line, without its newline.
        line: String,
    },
    /// Parent side: a child run started.
    SubAgentStarted {
        /// The parent session.
        parent_session_id: String,
        /// The child session.
        child_session_id: String,
        /// The child's title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// Parent side: one event of a child's stream, wrapped.
    SubAgentEvent {
        /// The parent session. Shared: a run's events all carry the same one,
        /// so wrapping an event copies no id.
        parent_session_id: Arc<str>,
        /// The child session (shared, like the parent's).
        child_session_id: Arc<str>,
        /// The child's event, verbatim.
        event: Box<AgentEvent>,
    },
    /// Parent side: the child is still running (every 5 s).
    SubAgentHeartbeat {
        /// The parent session.
        parent_session_id: String,
        /// The child session.
        child_session_id: String,
        /// When the heartbeat was sent.
        timestamp: DateTime<Utc>,
    },
    /// Parent side: a child run ended.
    SubAgentCompleted {
        /// The parent session.
        parent_session_id: String,
        /// The child session.
        child_session_id: String,
        /// How it ended.
        status: CompletionStatus,
        /// Why, when it did not complete.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The child's final answer, when the run completed with one
        /// (extension: a reader that does not know it skips it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
        /// What the run used, when its executor counted it (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Box<TokenUsage>>,
        /// The child's git worktree after the run, when it has one
        /// (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worktree: Option<Box<WorktreeOutcome>>,
    },
    /// Parent side: a child asks for approval of a gated action.
    ChildApprovalRequested {
        /// The child session.
        child_session_id: String,
        /// Id to answer the request with.
        request_id: String,
        /// The tool that wants to act.
        tool_name: String,
        /// The kind of permission asked for.
        permission: String,
        /// What the action touches.
        resource: String,
    },
    /// A run compressed its conversation to stay within its token budget:
    /// older turns were summarised by the model (`method: "summary"`) or cut
    /// with a marker (`method: "truncated"`). Sizes are in estimated tokens.
    ContextCompressed {
        /// Prompt size before.
        before_tokens: u64,
        /// Prompt size after.
        after_tokens: u64,
        /// The size compression aimed for.
        target_tokens: u64,
        /// How many messages were folded away.
        messages_compressed: usize,
        /// `summary` or `truncated`.
        method: String,
    },
    /// A run changed its task list; the list as it is now.
    TaskListUpdated {
        /// The whole list after the change.
        task_list: crate::tasks::TaskList,
    },
    /// Engine side: a session's event log lost events (its size cap was
    /// reached, or a write failed). Said explicitly, never silently: the
    /// events numbered `first_seq..=last_seq` of `session_id`'s log are gone.
    EventsTruncated {
        /// The session whose log lost events.
        session_id: String,
        /// First lost sequence number.
        first_seq: u64,
        /// Last lost sequence number.
        last_seq: u64,
        /// Why, and what to do about it.
        reason: String,
    },
    /// An event type this build does not know, carried through verbatim.
    #[serde(untagged)]
    Unknown(serde_json::Value),
}

impl AgentEvent {
    /// The child a parent-side event is about (`sub_agent_*` and
    /// `child_approval_requested`); `None` for any other event.
    pub fn child_session_id(&self) -> Option<&str> {
        match self {
            Self::SubAgentEvent {
                child_session_id, ..
            } => Some(child_session_id),
            Self::SubAgentStarted {
                child_session_id, ..
            }
            | Self::SubAgentHeartbeat {
                child_session_id, ..
            }
            | Self::SubAgentCompleted {
                child_session_id, ..
            }
            | Self::ChildApprovalRequested {
                child_session_id, ..
            } => Some(child_session_id),
            _ => None,
        }
    }

    /// The parent of the child a `sub_agent_*` event is about; `None` for
    /// any other event.
    pub fn parent_session_id(&self) -> Option<&str> {
        match self {
            Self::SubAgentEvent {
                parent_session_id, ..
            } => Some(parent_session_id),
            Self::SubAgentStarted {
                parent_session_id, ..
            }
            | Self::SubAgentHeartbeat {
                parent_session_id, ..
            }
            | Self::SubAgentCompleted {
                parent_session_id, ..
            } => Some(parent_session_id),
            _ => None,
        }
    }

    /// Appends the event's JSON to `out`: the same bytes as
    /// `serde_json::to_writer`, with the most frequent event, `token`, written
    /// directly rather than through the derived serializer's tagged-enum
    /// machinery (streams carry one per generated piece of text).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Self::Token { content } => {
                out.extend_from_slice(br#"{"type":"token","content":"#);
                serde_json::to_writer(&mut *out, content)?;
                out.push(b'}');
                Ok(())
            }
            other => serde_json::to_writer(out, other),
        }
    }

    /// A `token` event.
    pub fn token(content: impl Into<String>) -> Self {
        Self::Token {
            content: content.into(),
        }
    }

    /// The wire `type` tag of this event (`None` for an unknown event without a
    /// string `type`).
    pub fn type_name(&self) -> Option<&str> {
        Some(match self {
            Self::Token { .. } => "token",
            Self::ToolStart { .. } => "tool_start",
            Self::ToolComplete { .. } => "tool_complete",
            Self::ToolError { .. } => "tool_error",
            Self::Complete { .. } => "complete",
            Self::Error { .. } => "error",
            Self::Stderr { .. } => "stderr",
            Self::Retrying { .. } => "retrying",
            Self::Placed { .. } => "placed",
            Self::SubAgentStarted { .. } => "sub_agent_started",
            Self::SubAgentEvent { .. } => "sub_agent_event",
            Self::SubAgentHeartbeat { .. } => "sub_agent_heartbeat",
            Self::SubAgentCompleted { .. } => "sub_agent_completed",
            Self::ChildApprovalRequested { .. } => "child_approval_requested",
            Self::EventsTruncated { .. } => "events_truncated",
            Self::ContextCompressed { .. } => "context_compressed",
            Self::TaskListUpdated { .. } => "task_list_updated",
            Self::Unknown(v) => return v.get("type").and_then(|t| t.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_json_writes_what_serde_writes() {
        let events = [
            AgentEvent::token("plain "),
            AgentEvent::token(""),
            AgentEvent::token("quote \" backslash \\ newline \n tab \t nul \u{0} é 😀"),
            AgentEvent::Complete { usage: None },
            AgentEvent::Error {
                message: "boom".into(),
            },
            AgentEvent::Stderr {
                line: "warning: slow disk".into(),
            },
            AgentEvent::Placed {
                placement: "pool".into(),
                worker: "w-1".into(),
                host: Some("gpu-1".into()),
            },
            AgentEvent::Retrying {
                what: "model request".into(),
                attempt: 2,
                delay_ms: 500,
                reason: "429 Too Many Requests".into(),
            },
            AgentEvent::SubAgentEvent {
                parent_session_id: "p".into(),
                child_session_id: "c".into(),
                event: Box::new(AgentEvent::token("w ")),
            },
        ];
        for e in events {
            let mut out = b"prefix:".to_vec();
            e.write_json(&mut out).unwrap();
            let want = format!("prefix:{}", serde_json::to_string(&e).unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn parent_side_events_name_their_child_and_parent() {
        let wrapped = AgentEvent::SubAgentEvent {
            parent_session_id: "p".into(),
            child_session_id: "c".into(),
            event: Box::new(AgentEvent::token("x")),
        };
        assert_eq!(wrapped.child_session_id(), Some("c"));
        assert_eq!(wrapped.parent_session_id(), Some("p"));
        let asked = AgentEvent::ChildApprovalRequested {
            child_session_id: "c".into(),
            request_id: "r".into(),
            tool_name: "sh".into(),
            permission: "execute".into(),
            resource: "/".into(),
        };
        assert_eq!(asked.child_session_id(), Some("c"));
        assert_eq!(asked.parent_session_id(), None);
        assert_eq!(AgentEvent::token("x").child_session_id(), None);
    }

    #[test]
    fn sub_agent_completed_reads_protocol_v1_and_writes_no_absent_extension() {
        // The protocol v1 form: no result, usage or worktree.
        let v1 = r#"{"type":"sub_agent_completed","parent_session_id":"p","child_session_id":"c","status":"completed"}"#;
        let e: AgentEvent = serde_json::from_str(v1).unwrap();
        let AgentEvent::SubAgentCompleted {
            status,
            error,
            result,
            usage,
            worktree,
            ..
        } = &e
        else {
            panic!("not a sub_agent_completed: {e:?}");
        };
        assert_eq!(*status, CompletionStatus::Completed);
        assert!(error.is_none() && result.is_none() && usage.is_none() && worktree.is_none());
        // Absent extensions are not written: the v1 bytes come back.
        assert_eq!(serde_json::to_string(&e).unwrap(), v1);
        // Present ones travel.
        let with = AgentEvent::SubAgentCompleted {
            parent_session_id: "p".into(),
            child_session_id: "c".into(),
            status: CompletionStatus::Completed,
            error: None,
            result: Some("42".into()),
            usage: Some(Box::new(TokenUsage {
                total_tokens: 7,
                ..TokenUsage::default()
            })),
            worktree: None,
        };
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json["result"], "42");
        assert_eq!(json["usage"]["total_tokens"], 7);
        assert_eq!(serde_json::from_value::<AgentEvent>(json).unwrap(), with);
    }

    fn round_trip(json: &str) -> AgentEvent {
        let ev: AgentEvent = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            json,
            "round trip of {json}"
        );
        ev
    }

    #[test]
    fn echo_events_match_protocol_literals() {
        assert_eq!(
            round_trip(r#"{"type":"token","content":"hi "}"#),
            AgentEvent::token("hi ")
        );
        assert_eq!(
            round_trip(r#"{"type":"complete"}"#),
            AgentEvent::Complete { usage: None }
        );
    }

    #[test]
    fn complete_carries_usage() {
        let ev = round_trip(
            r#"{"type":"complete","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        );
        match ev {
            AgentEvent::Complete { usage: Some(u) } => assert_eq!(u.total_tokens, 7),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parent_side_wrappers_match_protocol_fields() {
        round_trip(
            r#"{"type":"sub_agent_started","parent_session_id":"p","child_session_id":"c","title":"t"}"#,
        );
        round_trip(
            r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"token","content":"x"}}"#,
        );
        round_trip(
            r#"{"type":"sub_agent_heartbeat","parent_session_id":"p","child_session_id":"c","timestamp":"2026-01-02T03:04:05Z"}"#,
        );
        round_trip(
            r#"{"type":"sub_agent_completed","parent_session_id":"p","child_session_id":"c","status":"timeout","error":"idle"}"#,
        );
        round_trip(
            r#"{"type":"child_approval_requested","child_session_id":"c","request_id":"sa-1","tool_name":"bash","permission":"execute","resource":"ls"}"#,
        );
        round_trip(
            r#"{"type":"events_truncated","session_id":"p","first_seq":3,"last_seq":9,"reason":"cap"}"#,
        );
    }

    #[test]
    fn unknown_event_types_are_carried_through_verbatim() {
        let json = r#"{"type":"reasoning_token","content":"hmm","extra":[1,2]}"#;
        let ev = round_trip(json);
        assert!(matches!(ev, AgentEvent::Unknown(_)));
        assert_eq!(ev.type_name(), Some("reasoning_token"));
        // An unknown event nested in a wrapper survives too.
        round_trip(
            r#"{"type":"sub_agent_event","parent_session_id":"p","child_session_id":"c","event":{"type":"plan","steps":[]}}"#,
        );
    }

    #[test]
    fn known_events_ignore_unknown_fields() {
        let ev: AgentEvent =
            serde_json::from_str(r#"{"type":"token","content":"a","seq":9}"#).unwrap();
        assert_eq!(ev, AgentEvent::token("a"));
    }

    #[test]
    fn an_event_stays_small_to_move() {
        // Every event is moved into a Box and an Arc and through channels on
        // the publishing path: at 256 bytes (usage and worktree inline in
        // sub_agent_completed) a live subscriber got about 25% fewer events
        // a second. Large, rare payloads go behind a Box.
        assert!(
            std::mem::size_of::<AgentEvent>() <= 128,
            "AgentEvent is {} bytes",
            std::mem::size_of::<AgentEvent>()
        );
    }
}
