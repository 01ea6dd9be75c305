//! Conversation messages: the unit of a session's transcript (S1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The human or parent agent.
    User,
    /// The model or executor.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// One message of a transcript. Shipped verbatim to workers in the `run` frame's
/// `messages` array (protocol.md 4), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Author of the message.
    pub role: Role,
    /// Text of the message.
    #[serde(default)]
    pub content: String,
    /// When the message was written.
    #[serde(default = "Utc::now")]
    pub created_at: DateTime<Utc>,
    /// Tool calls requested by an assistant message (opaque, provider-shaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// For a `tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with the given role and text, stamped now.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            created_at: Utc::now(),
            tool_calls: None,
            tool_call_id: None,
        }
    }

    /// A user message stamped now.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message stamped now.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A system message stamped now.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_and_skips_absent_tool_fields() {
        let json = r#"{"role":"user","content":"hi","created_at":"2026-01-02T03:04:05Z"}"#;
        let m: Message = serde_json::from_str(json).unwrap();
        assert_eq!(m.role, Role::User);
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
    }

    #[test]
    fn message_ignores_unknown_fields_and_defaults_time() {
        let m: Message =
            serde_json::from_str(r#"{"role":"assistant","content":"x","extra":1}"#).unwrap();
        assert_eq!(m.role, Role::Assistant);
    }
}
