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
    /// A role this version does not know (e.g. `developer`). Kept so a
    /// transcript from another implementation never rejects a frame (F7, F8);
    /// written back as `other`.
    #[serde(other)]
    Other,
}

/// One message of a transcript. Shipped verbatim to workers in the `run` frame's
/// `messages` array (protocol.md 4), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Author of the message (missing reads as [`Role::Other`]).
    #[serde(default = "unknown_role")]
    pub role: Role,
    /// Text of the message. Lenient on input (F7, F8): `null` reads as empty,
    /// an array of parts as their texts joined by newlines.
    #[serde(default, deserialize_with = "lenient_text")]
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

fn unknown_role() -> Role {
    Role::Other
}

/// Reads any JSON value as message text, so no content shape rejects a frame.
fn lenient_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(text_of(&v))
}

fn text_of(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    Value::Object(o) => o.get("text").map(text_of).unwrap_or_default(),
                    other => text_of(other),
                })
                .filter(|t| !t.is_empty())
                .collect();
            texts.join("\n")
        }
        other => other.to_string(),
    }
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
    fn f7_unknown_roles_and_null_or_array_content_are_read_not_rejected() {
        let m: Message = serde_json::from_str(r#"{"role":"developer","content":null}"#).unwrap();
        assert_eq!((m.role, m.content.as_str()), (Role::Other, ""));
        let m: Message = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]}"#,
        )
        .unwrap();
        assert_eq!((m.role, m.content.as_str()), (Role::User, "a\nb"));
        let m: Message = serde_json::from_str(r#"{"role":"tool","content":{"ok":true}}"#).unwrap();
        assert_eq!(m.content, r#"{"ok":true}"#);
    }

    #[test]
    fn message_ignores_unknown_fields_and_defaults_time() {
        let m: Message =
            serde_json::from_str(r#"{"role":"assistant","content":"x","extra":1}"#).unwrap();
        assert_eq!(m.role, Role::Assistant);
    }
}
