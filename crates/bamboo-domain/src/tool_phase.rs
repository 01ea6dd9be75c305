//! The last tool a run started or finished, and in which phase, as a parent
//! reads it from the run's events (`get`'s `last_tool_name` and
//! `last_tool_phase`).

use serde::{Deserialize, Serialize};

use crate::event::AgentEvent;

/// Where a tool call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolPhase {
    /// The call started (`tool_start`) and has not ended.
    Started,
    /// The call returned (`tool_complete`).
    Completed,
    /// The call failed (`tool_error`).
    Error,
}

impl ToolPhase {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Error => "error",
        }
    }
}

/// The last tool event of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTool {
    /// The tool's name.
    pub name: String,
    /// Its phase.
    pub phase: ToolPhase,
}

impl LastTool {
    /// The tool and phase `event` reports; `None` for a non-tool event.
    pub fn of(event: &AgentEvent) -> Option<Self> {
        let (name, phase) = match event {
            AgentEvent::ToolStart { tool_name, .. } => (tool_name, ToolPhase::Started),
            AgentEvent::ToolComplete { tool_name, .. } => (tool_name, ToolPhase::Completed),
            AgentEvent::ToolError { tool_name, .. } => (tool_name, ToolPhase::Error),
            _ => return None,
        };
        Some(Self {
            name: name.clone(),
            phase,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_events_give_name_and_phase_others_nothing() {
        let start = AgentEvent::ToolStart {
            tool_call_id: "c".into(),
            tool_name: "read_file".into(),
            arguments: serde_json::json!({}),
        };
        assert_eq!(
            LastTool::of(&start),
            Some(LastTool {
                name: "read_file".into(),
                phase: ToolPhase::Started
            })
        );
        let err = AgentEvent::ToolError {
            tool_call_id: "c".into(),
            tool_name: "write_file".into(),
            error: "no".into(),
        };
        assert_eq!(LastTool::of(&err).map(|t| t.phase), Some(ToolPhase::Error));
        assert_eq!(LastTool::of(&AgentEvent::token("x")), None);
        assert_eq!(
            serde_json::to_string(&ToolPhase::Completed).unwrap(),
            "\"completed\""
        );
    }
}
