//! A session's task list: the steps of its work with their status, shown to
//! the model and updated by it. Named as the reference names it
//! (`task_list`, its `items`).

use serde::{Deserialize, Serialize};

/// Where one task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskItemStatus {
    /// Not started.
    Pending,
    /// Being worked on.
    InProgress,
    /// Done.
    Completed,
    /// Cannot go on without something else.
    Blocked,
}

impl TaskItemStatus {
    /// Every status, in wire order.
    pub const ALL: [TaskItemStatus; 4] = [
        Self::Pending,
        Self::InProgress,
        Self::Completed,
        Self::Blocked,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Blocked => "blocked",
        }
    }

    /// The status named `s` (its wire string).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskItem {
    /// Short stable id (the model refers to the task by it).
    pub id: String,
    /// What the task is.
    pub description: String,
    /// Where it stands.
    pub status: TaskItemStatus,
}

/// An ordered list of tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskList {
    /// The tasks, in order.
    #[serde(default)]
    pub items: Vec<TaskItem>,
}

impl TaskList {
    /// The list as lines a model reads: `- [status] id: description`.
    pub fn render(&self) -> String {
        if self.items.is_empty() {
            return "(the task list is empty)".into();
        }
        self.items
            .iter()
            .map(|t| format!("- [{}] {}: {}", t.status.as_str(), t.id, t.description))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_their_wire_strings_and_the_list_renders_one_line_per_task() {
        for s in TaskItemStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(TaskItemStatus::parse(s.as_str()), Some(s));
        }
        let list = TaskList {
            items: vec![TaskItem {
                id: "1".into(),
                description: "read the code".into(),
                status: TaskItemStatus::InProgress,
            }],
        };
        assert_eq!(list.render(), "- [in_progress] 1: read the code");
        let back: TaskList = serde_json::from_str(&serde_json::to_string(&list).unwrap()).unwrap();
        assert_eq!(back, list);
    }
}
